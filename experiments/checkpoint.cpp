#include "experiments/checkpoint.h"

#include <cstring>
#include <sstream>

#include "experiments/run_files.h"

namespace blocklab {

namespace {

constexpr char kMagic[8] = {'B', 'L', 'K', 'C', 'K', 'P', 'T', '1'};
constexpr std::size_t kHeader = 24;

void put_u64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_u64(const std::string& s, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

const char* kFix = "delete it to start the run over (blocklab run ... --force), or resume from another checkpoint";

// The payload of a checkpoint file after checking its framing; throws CheckpointError.
std::string verified_payload(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const std::exception&) {
    throw CheckpointError("cannot read checkpoint " + path + ": file is missing or unreadable");
  }
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw CheckpointError("checkpoint " + path + " is not a blocklab checkpoint or is truncated (" +
                          std::to_string(bytes.size()) + " bytes)\n  " + kFix);
  const std::uint64_t length = get_u64(bytes, 8);
  const std::uint64_t checksum = get_u64(bytes, 16);
  if (bytes.size() - kHeader != length)
    throw CheckpointError("checkpoint " + path + " is truncated: expected " + std::to_string(length + kHeader) +
                          " bytes, found " + std::to_string(bytes.size()) + "\n  " + kFix);
  std::string payload = bytes.substr(kHeader);
  if (fnv1a64(payload.data(), payload.size()) != checksum)
    throw CheckpointError("checkpoint " + path + " is corrupt: checksum mismatch\n  " + kFix);
  return payload;
}

void write_scalar(torch::serialize::OutputArchive& a, const std::string& key, std::int64_t v) {
  a.write("position/" + key, c10::IValue(v));
}
void write_scalar(torch::serialize::OutputArchive& a, const std::string& key, double v) {
  a.write("position/" + key, c10::IValue(v));
}

}  // namespace

void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     const TrainPosition& p) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  write_scalar(archive, "step", p.step);
  write_scalar(archive, "epoch", p.epoch);
  write_scalar(archive, "batch", p.batch);
  write_scalar(archive, "loss_sum", p.loss_sum);
  write_scalar(archive, "loss_count", p.loss_count);
  write_scalar(archive, "best_metric", p.best_metric);
  write_scalar(archive, "best_epoch", p.best_epoch);
  write_scalar(archive, "metrics_bytes", p.metrics_bytes);
  write_scalar(archive, "log_bytes", p.log_bytes);
  if (!p.task_state.empty()) archive.write("task_state", c10::IValue(p.task_state));
  std::ostringstream payload_stream;
  archive.save_to(payload_stream);
  const std::string payload = payload_stream.str();
  std::string file(kMagic, sizeof kMagic);
  put_u64(file, payload.size());
  put_u64(file, fnv1a64(payload.data(), payload.size()));
  file += payload;
  write_file_atomic(path, file);
}

TrainPosition load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  const std::string payload = verified_payload(path);
  TrainPosition p;
  try {
    std::istringstream in(payload);
    torch::serialize::InputArchive archive, model_archive, optimizer_archive;
    archive.load_from(in);
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    model.load(model_archive);
    optimizer.load(optimizer_archive);
    auto read_int = [&](const char* key) {
      c10::IValue v;
      archive.read(std::string("position/") + key, v);
      return v.toInt();
    };
    auto read_double = [&](const char* key) {
      c10::IValue v;
      archive.read(std::string("position/") + key, v);
      return v.toDouble();
    };
    p.step = read_int("step");
    p.epoch = read_int("epoch");
    p.batch = read_int("batch");
    p.loss_sum = read_double("loss_sum");
    p.loss_count = read_int("loss_count");
    p.best_metric = read_double("best_metric");
    p.best_epoch = read_int("best_epoch");
    p.metrics_bytes = read_int("metrics_bytes");
    p.log_bytes = read_int("log_bytes");
    c10::IValue task_state;
    if (archive.try_read("task_state", task_state)) p.task_state = task_state.toStringRef();
  } catch (const c10::Error& e) {
    throw CheckpointError("checkpoint " + path +
                          " does not match this model or optimizer (was the config changed?): " +
                          e.what_without_backtrace());
  }
  return p;
}

void load_model_weights(const std::string& path, torch::nn::Module& model) {
  const std::string payload = verified_payload(path);
  try {
    std::istringstream in(payload);
    torch::serialize::InputArchive archive, model_archive;
    archive.load_from(in);
    archive.read("model", model_archive);
    model.load(model_archive);
  } catch (const c10::Error& e) {
    throw CheckpointError("checkpoint " + path + " does not match this model: " + e.what_without_backtrace());
  }
}

}  // namespace blocklab
