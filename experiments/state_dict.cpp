#include "experiments/state_dict.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <filesystem>
#include <map>

#include "experiments/checkpoint.h"
#include "experiments/run_files.h"

namespace blocklab {

// torch::pickle_save's container (a zip: data.pkl plus one record per tensor), with the
// pickle written untagged: a tagged dict names a TorchScript global that Python's
// torch.load(weights_only=True) refuses, while a plain dict of tensors is what it accepts.
std::string pickle_untagged(const c10::IValue& value) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* data, std::size_t n) { pickle.insert(pickle.end(), data, data + n); },
                              nullptr, nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();
  std::string container;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, std::size_t n) {
    container.append(static_cast<const char*>(data), n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  return container;
}

void save_state_dict(const std::string& path, const torch::nn::Module& model) {
  c10::Dict<std::string, torch::Tensor> dict;
  const auto add = [&](const std::string& name, const torch::Tensor& t) {
    dict.insert(name, t.detach().to(torch::kCPU).contiguous());
  };
  for (const auto& p : model.named_parameters()) add(p.key(), p.value());
  for (const auto& b : model.named_buffers()) add(b.key(), b.value());
  write_file_atomic(path, pickle_untagged(c10::IValue(dict)));
}

NamedTensors read_state_dict(const std::string& path) {
  if (!file_exists(path)) throw CheckpointError("weights file " + path + " does not exist");
  const std::string bytes = read_file(path);
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();  // its first sentence: the rest is advice for Python
    throw CheckpointError(
        "weights file " + path +
        " is not a torch.save'd dict of tensors (truncated or another format): " + why.substr(0, why.find(". ")));
  }
  if (!value.isGenericDict())
    throw CheckpointError("weights file " + path + " holds a " + value.tagKind() +
                          ", not a dict of tensors; from Python, save with torch.save(dict(model.state_dict()), path)");
  NamedTensors out;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor())
      throw CheckpointError("weights file " + path + " has an entry that is not name -> tensor");
    out.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  return out;
}

std::string init_weights_file(const std::string& run_or_file) {
  if (!std::filesystem::is_directory(run_or_file)) {
    if (!file_exists(run_or_file))
      throw CheckpointError("--init-from " + run_or_file + ": no such file or run directory");
    return run_or_file;
  }
  for (const char* which : {"best", "final"}) {
    const std::string path = run_or_file + "/weights/" + which + ".pt";
    if (file_exists(path)) return path;
  }
  throw CheckpointError("--init-from " + run_or_file +
                        ": the directory has no weights/best.pt or weights/final.pt "
                        "(runs write them from this version on; name a .pt file instead)");
}

namespace {
std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (std::int64_t d = 0; d < t.dim(); ++d) s += (d ? "," : "") + std::to_string(t.size(d));
  return s + "]";
}
}  // namespace

InitReport init_from_state_dict(torch::nn::Module& model, const NamedTensors& weights, const std::string& source) {
  std::map<std::string, torch::Tensor> own;
  for (const auto& p : model.named_parameters()) own.emplace(p.key(), p.value());
  for (const auto& b : model.named_buffers()) own.emplace(b.key(), b.value());
  InitReport report;
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : weights) {
    const auto it = own.find(name);
    if (it == own.end()) {
      report.unused.push_back(name);
    } else if (!it->second.sizes().equals(tensor.sizes())) {
      report.reshaped.push_back(name + " " + shape_text(tensor) + " vs " + shape_text(it->second));
      own.erase(it);
    } else {
      it->second.copy_(tensor);
      report.loaded.push_back(name);
      own.erase(it);
    }
  }
  for (const auto& [name, tensor] : own) report.missing.push_back(name);
  if (report.loaded.empty())
    throw CheckpointError("no tensor of " + source + " matches this model by name and shape (" + report.text() +
                          "); is it the weights of another model?");
  return report;
}

std::string InitReport::text() const {
  std::string s = "loaded " + std::to_string(loaded.size()) + " tensors";
  const auto list = [&](const std::string& what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    s += "; " + what + " " + std::to_string(names.size()) + ":";
    for (std::size_t i = 0; i < names.size() && i < 4; ++i) s += " " + names[i] + (i + 1 < names.size() ? "," : "");
    if (names.size() > 4) s += " ...";
  };
  list("kept as initialised, another shape,", reshaped);
  list("kept as initialised, not in the file,", missing);
  list("unused from the file", unused);
  return s;
}

}  // namespace blocklab
