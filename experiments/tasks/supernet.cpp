// task `supernet`: trains a weight-sharing supernet (model/supernet, blocks/nas/supernet.h) on
// images; trainer.sampler picks what a step trains (blocks/nas/samplers.h).
//
// sandwich (default): the sandwich rule with in-place distillation (Yu & Huang 2019,
// "Universally Slimmable Networks and Improved Training Techniques", arXiv:1903.05134, §3.2-3.3;
// BigNAS, Yu et al. 2020, arXiv:2003.11142): the largest subnet learns from the labels, the
// smallest and n random subnets from the largest's predictions on the same batch (soft targets,
// without gradient through them):
//   L = CE_ls(f_max(x), y) + sum_{s in {min, rand_1..rand_n}} CE(f_s(x), sg(softmax(f_max(x))))
// trainer.distill: false trains every subnet on the labels instead. uniform, multi_arch
// (ViT-ResNAS: one random subnet per sub-batch, the mean of their losses) and complexity_aware
// (ElasticViT: subnets from a FLOPs bank that walks by one step at most, teaching the smallest)
// and performance_aware (ElasticViT: the same, and every bank remembers its best subnets by -CE
// on their batch and draws from them with probability trainer.memory_rate; the memory is
// rescored on the first batch of every epoch and kept in checkpoints) as the sampler says. One optimizer step takes the
// summed gradients. What a step trains is a function of (seed, global step), so a resumed run trains what the
// uninterrupted one did.
//
// trainer.objective: relation_kd is AutoDistil's task-agnostic training (Xu et al., NeurIPS 2022,
// §3.2): no labels; every subnet a step draws learns the self-attention relations of its last
// attention-type layer from those of a trained supernet's largest subnet (trainer.teacher, a run
// directory), by MiniLMv2's relation distillation (blocks/nas/relation_kd.h). With
// model.subspaces/subspace, one such supernet per sub-space.
//
// Evaluation: the largest subnet (val/acc, test/acc: what selects the best checkpoint) and the
// smallest (val/smallest_acc, test/smallest_acc); with relation_kd also their distillation loss
// (val/relation_kd, val/smallest_relation_kd; the largest's selects the best checkpoint).
#include <algorithm>
#include <optional>
#include <random>

#include "blocks/nas/relation_kd.h"
#include "blocks/nas/samplers.h"
#include "blocks/nas/supernet.h"
#include "experiments/tasks/classification.h"
#include "experiments/trained_run.h"

namespace blocklab {
namespace {

const SupervisedDefaults kSupernetDefaults{"images", "model/supernet", "linear", "fashion-mnist"};

const Schema& supernet_task_schema() {
  static const Schema schema = classification_schema(kSupernetDefaults, [](Schema& t) {
    t.add_choice("sampler", "sandwich", {"sandwich", "uniform", "multi_arch", "complexity_aware", "performance_aware"},
                 "what a step trains: the sandwich rule (default), uniform random subnets, ViT-ResNAS's multi_arch "
                 "sub-batches, ElasticViT's complexity_aware FLOPs banks, or those with its performance_aware memory");
    t.add_int("random_subnets", 2, "random subnets a step (sandwich: besides the largest and the smallest; default 2)")
        .min = 0;
    t.add_bool("distill", true,
               "sandwich: all but the largest subnet learn from the largest's predictions (default true); false: "
               "every subnet learns from the labels");
    t.add_int("sub_batches", 4, "multi_arch: sub-batches a step, each with its own subnet (default 4)").min = 1;
    ParamSpec banks;
    banks.name = "mflops_banks", banks.type = ParamType::FloatList, banks.default_value = ConfigNode::sequence();
    banks.min = 0.0, banks.doc = "complexity_aware: the FLOPs banks' targets in MFLOPs, increasing (default [])";
    t.add(banks);
    t.add_float("mflops_bound", 0.5, "complexity_aware: accepted distance to the bank's target, MFLOPs (default 0.5)")
        .min = 0.0;
    t.add_int("memory_size", 5, "performance_aware: the best subnets a bank remembers (default 5)").min = 1;
    auto& rate = t.add_float("memory_rate", 0.2,
                             "performance_aware: probability a subnet is drawn from the bank's memory (default 0.2)");
    rate.min = 0.0, rate.max = 1.0;
    t.add_choice("objective", "labels", {"labels", "relation_kd"},
                 "what the subnets learn: the labels (and in-place distillation; default) or AutoDistil's "
                 "task-agnostic self-attention relation distillation from trainer.teacher (relation_kd)");
    t.add_string("teacher", "",
                 "relation_kd: the run directory of a trained model/supernet whose largest subnet teaches (default "
                 "none)");
    t.add_int("relation_heads", 4, "relation_kd: relation heads; must divide every attention width (default 4)").min =
        1;
  });
  return schema;
}

class SupernetHooks : public ClassificationHooks {
 public:
  SupernetHooks(const TaskContext& context, const Schema& schema)
      : ClassificationHooks(context, schema, ClassificationTask{kSupernetDefaults, /*augment=*/true}),
        seed_(context.seed) {
    sampler_settings_.kind = trainer_.get_string("sampler");
    sampler_settings_.random = trainer_.get_int("random_subnets");
    sampler_settings_.distill = trainer_.get_bool("distill");
    sampler_settings_.sub_batches = trainer_.get_int("sub_batches");
    sampler_settings_.mflops_banks = trainer_.get_float_list("mflops_banks");
    sampler_settings_.mflops_bound = trainer_.get_float("mflops_bound");
    sampler_settings_.memory_size = trainer_.get_int("memory_size");
    sampler_settings_.memory_rate = trainer_.get_float("memory_rate");
    relation_kd_ = trainer_.get_string("objective") == "relation_kd";
    relation_heads_ = trainer_.get_int("relation_heads");
    if (sampler_settings_.kind == "performance_aware")
      memory_.emplace(static_cast<std::int64_t>(sampler_settings_.mflops_banks.size()), sampler_settings_.memory_size);
  }

  std::shared_ptr<torch::nn::Module> build_model() override {
    auto model = SupervisedHooks::build_model();
    supernet_ = std::dynamic_pointer_cast<SupernetImpl>(model_);
    if (!supernet_) throw std::logic_error("task supernet: the model is not a model/supernet");
    sampler_ =
        std::make_unique<SubnetSampler>(supernet_->space(), sampler_settings_,
                                        [net = supernet_.get()](const Subnet& s) { return net->subnet_macs(s) / 1e6; });
    if (relation_kd_) teacher_ = load_teacher(trainer_.get_string("teacher"));
    return model;
  }

  Selection selection() const override {
    if (!relation_kd_) return ClassificationHooks::selection();
    return {has_val() ? "val_relation_kd" : "test_relation_kd", /*higher_is_better=*/false};
  }

  Batch train_batch(std::int64_t epoch, std::int64_t index) override {
    step_ = epoch * batches_per_epoch() + index;
    return SupervisedHooks::train_batch(epoch, index);
  }

  torch::Tensor loss(const Batch& batch) override {
    if (relation_kd_) return relation_loss(batch);
    namespace F = torch::nn::functional;
    const auto labels = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing());
    torch::Tensor total, teachers;  // teachers: the sum of the teaching subnets' probabilities
    double teaching = 0;
    const auto sampled = sampler_->at(seed_, step_, memory_ ? &*memory_ : nullptr);
    if (memory_ && step_ > 0 && step_ % batches_per_epoch() == 0)
      rescore_memory(sampler_->bank_at(seed_, step_), batch);
    for (const SampledSubnet& s : sampled) {
      supernet_->set_subnet(s.subnet);
      const Batch part = s.part < 0 ? batch : sub_batch(batch, s.part);
      const auto logits = predict(part);
      torch::Tensor l = s.distills ? -((teachers / teaching) * torch::log_softmax(logits, -1)).sum(-1).mean()
                                   : F::cross_entropy(logits, part.targets, labels);
      if (s.part >= 0) l = l / static_cast<double>(sampler_settings_.sub_batches);
      if (s.teaches) {
        const auto p = torch::softmax(logits.detach(), -1);
        teachers = teachers.defined() ? teachers + p : p;
        teaching += 1;
      }
      if (memory_ && s.bank >= 0)  // ElasticViT's score: -CE on the batch, without label smoothing
        memory_->offer(s.bank, s.subnet, -F::cross_entropy(logits.detach(), part.targets).item<double>());
      total = total.defined() ? total + l : l;
    }
    supernet_->set_subnet(largest_subnet(supernet_->space()));
    return total;
  }

  Evaluation evaluate(JsonObject& line, const PhaseNote& note_phase) override {
    supernet_->set_subnet(largest_subnet(supernet_->space()));
    Evaluation result = ClassificationHooks::evaluate(line, note_phase);
    supernet_->set_subnet(smallest_subnet(supernet_->space()));
    std::string text;
    for (const std::string split : {"val", "test"}) {
      if (split == "val" && !has_val()) continue;
      note_phase("evaluation of the smallest subnet on " + split);
      const double acc = evaluate_split(split).accuracy;
      line.set(split + "/smallest_acc", acc);
      text += ", " + split + " smallest " + format_double(acc);
    }
    supernet_->set_subnet(largest_subnet(supernet_->space()));
    result.text += text;
    if (relation_kd_) add_relation_kd(line, note_phase, result);
    return result;
  }

  std::string task_state() const override { return memory_ ? memory_->text() : ""; }
  std::string data_parallel_problem() const override {
    return memory_ ? "trainer.sampler performance_aware scores subnets on each rank's own rows, so data-parallel "
                     "ranks would remember different subnets and sample apart"
                   : "";
  }
  void restore_task_state(const std::string& state) override {
    if (memory_)
      memory_ = SubnetMemory::from_text(state, supernet_->space(),
                                        static_cast<std::int64_t>(sampler_settings_.mflops_banks.size()),
                                        sampler_settings_.memory_size);
  }

 private:
  // Sub-batch `part` of `sub_batches` (torch::chunk's split: the last may be shorter).
  Batch sub_batch(const Batch& batch, std::int64_t part) const {
    const auto parts = sampler_settings_.sub_batches;
    return {batch.inputs.chunk(parts)[static_cast<std::size_t>(part)],
            batch.targets.chunk(parts)[static_cast<std::size_t>(part)],
            {}};
  }

  // The teacher of relation_kd: a trained supernet's largest subnet, frozen.
  Supernet load_teacher(const std::string& run_dir) const {
    const TrainedRun run = load_trained_network(run_dir, "best");
    Supernet teacher = std::dynamic_pointer_cast<SupernetImpl>(run.network);
    if (!teacher)
      throw ConfigError("trainer.teacher: " + run_dir + " did not train a model/supernet", Source{}, "trainer.teacher",
                        {"a run of task supernet (e.g. blocklab run fmnist_supernet), whose largest subnet teaches"});
    teacher->set_subnet(largest_subnet(teacher->space()));
    teacher->to(device_);
    teacher->eval();
    for (auto& p : teacher->parameters()) p.requires_grad_(false);
    return teacher;
  }

  // The relations of `part` of the teacher's (or all of them).
  static AttentionRelations relations_part(const AttentionRelations& r, std::int64_t part, std::int64_t parts) {
    if (part < 0) return r;
    const auto at = static_cast<std::size_t>(part);
    return {r.q.chunk(parts)[at], r.k.chunk(parts)[at], r.v.chunk(parts)[at]};
  }

  // relation_kd: every subnet of the step learns the teacher's relations (no labels).
  torch::Tensor relation_loss(const Batch& batch) {
    AttentionRelations taught;
    {
      torch::NoGradGuard no_grad;
      teacher_->forward_relations(batch.inputs, taught);
    }
    torch::Tensor total;
    for (const SampledSubnet& s : sampler_->at(seed_, step_)) {
      supernet_->set_subnet(s.subnet);
      const Batch part = s.part < 0 ? batch : sub_batch(batch, s.part);
      AttentionRelations learnt;
      supernet_->forward_relations(part.inputs, learnt);
      auto l = relation_kd_loss(relations_part(taught, s.part, sampler_settings_.sub_batches), learnt, relation_heads_);
      if (s.part >= 0) l = l / static_cast<double>(sampler_settings_.sub_batches);
      total = total.defined() ? total + l : l;
    }
    supernet_->set_subnet(largest_subnet(supernet_->space()));
    return total;
  }

  // Mean relation-distillation loss of the largest and of the smallest subnet on a split; the
  // teacher's relations are computed once a batch for both.
  std::pair<double, double> split_relation_kd(const std::string& split) const {
    const Subnet largest = largest_subnet(supernet_->space()), smallest = smallest_subnet(supernet_->space());
    double sum_largest = 0, sum_smallest = 0;
    std::int64_t n = 0;
    for_each_batch(split, [&](const Batch& b) {
      AttentionRelations taught, learnt;
      teacher_->forward_relations(b.inputs, taught);
      const auto rows = static_cast<double>(b.inputs.size(0));
      supernet_->set_subnet(largest);
      supernet_->forward_relations(b.inputs, learnt);
      sum_largest += relation_kd_loss(taught, learnt, relation_heads_).item<double>() * rows;
      supernet_->set_subnet(smallest);
      supernet_->forward_relations(b.inputs, learnt);
      sum_smallest += relation_kd_loss(taught, learnt, relation_heads_).item<double>() * rows;
      n += b.inputs.size(0);
    });
    supernet_->set_subnet(largest);
    const auto count = static_cast<double>(std::max<std::int64_t>(n, 1));
    return {sum_largest / count, sum_smallest / count};
  }

  void add_relation_kd(JsonObject& line, const PhaseNote& note_phase, Evaluation& result) {
    for (const std::string split : {"val", "test"}) {
      if (split == "val" && !has_val()) continue;
      note_phase("relation distillation loss on " + split);
      const auto [largest, smallest] = split_relation_kd(split);
      line.set(split + "/relation_kd", largest);
      line.set(split + "/smallest_relation_kd", smallest);
      result.text += ", " + split + " relation kd " + format_double(largest);
      if (split == (has_val() ? "val" : "test")) result.selection = largest;
    }
  }

  // performance_aware: the bank's remembered subnets scored again on this batch (ElasticViT
  // refreshes its bank at the start of every epoch: the weights have moved since).
  void rescore_memory(std::int64_t bank, const Batch& batch) {
    torch::NoGradGuard no_grad;
    for (SubnetMemory::Entry& e : memory_->bank(bank)) {
      supernet_->set_subnet(e.subnet);
      e.score = -torch::nn::functional::cross_entropy(predict(batch), batch.targets).item<double>();
    }
  }

  std::uint64_t seed_;
  SamplerSettings sampler_settings_;
  std::optional<SubnetMemory> memory_;
  bool relation_kd_ = false;
  std::int64_t relation_heads_ = 4;
  Supernet teacher_;  // relation_kd
  std::unique_ptr<SubnetSampler> sampler_;
  std::int64_t step_ = 0;
  Supernet supernet_;
};

// relation_kd: a teacher run, a sampler that needs no labels, and a space whose every layer attends
// (the relations come from the last attention-type layer of each subnet).
template <typename At>
void check_relation_kd(const ConfigNode& config, const ParamReader& trainer, const std::string& sampler, const At& at,
                       DiagnosticSink& sink) {
  const std::string teacher = trainer.get_string("teacher");
  if (teacher.empty())
    at("teacher", "objective relation_kd needs a teacher",
       {"trainer.teacher=results/runs/fmnist_supernet/<id> (a trained supernet; its largest subnet teaches)"});
  else if (!file_exists(teacher + "/config.yaml"))
    at("teacher", "no run at '" + teacher + "' (no config.yaml)", {"a run directory, results/runs/<experiment>/<id>"});
  if (sampler == "performance_aware")
    at("sampler", "performance_aware ranks subnets by their loss on the labels; relation_kd has none",
       {"trainer.sampler=sandwich, uniform, multi_arch or complexity_aware"});
  const ConfigNode* model = config.find("model");
  const ConfigNode* mixers = model && model->is_map() ? model->find("mixers") : nullptr;
  const std::string fix = "model.mixers=[attention/softmax,linear/elu] (attention types only)";
  if (!mixers || !mixers->is_sequence()) {
    sink.add(Diagnostic{model ? model->source() : config.source(),
                        "model.mixers",
                        "relation_kd takes relations from attention layers; the default mixers include mixer/pooling",
                        {fix}});
    return;
  }
  for (const ConfigNode& m : mixers->items())
    if (m.is_scalar() && !is_attention_type_mixer(m.text()))
      sink.add(Diagnostic{m.source(),
                          "model.mixers",
                          "relation_kd takes relations from attention layers; " + m.text() + " does not attend",
                          {fix}});
}

const TaskCheck& supernet_check() {
  static const TaskCheck check = [](const ConfigNode& config, DiagnosticSink& sink) {
    const ConfigNode* model = config.find("model");
    if (model && component_key(*model) != "model/supernet")
      sink.add(Diagnostic{model->source(),
                          "model",
                          "task supernet trains a model/supernet, not " + component_key(*model),
                          {"model: {type: model/supernet, ...}, or task: classify for an ordinary model"}});
    classification_check(supernet_task_schema(), ClassificationTask{kSupernetDefaults, true})(config, sink);
    const ConfigNode trainer_node = config.find("trainer") ? *config.find("trainer") : ConfigNode::map();
    const ParamReader trainer(trainer_node, *supernet_task_schema().find("trainer")->section, "trainer");
    const auto at = [&](const std::string& key, const std::string& message, std::vector<std::string> hints) {
      const ConfigNode* v = trainer_node.is_map() ? trainer_node.find(key) : nullptr;
      sink.add(Diagnostic{v ? v->source() : trainer_node.source(), "trainer." + key, message, std::move(hints)});
    };
    const std::string sampler = trainer.get_string("sampler");
    if (sampler == "complexity_aware" || sampler == "performance_aware") {
      const auto banks = trainer.get_float_list("mflops_banks");
      if (banks.empty())
        at("mflops_banks", "the " + sampler + " sampler needs FLOPs banks",
           {"e.g. trainer.mflops_banks=[1,2,3,4] (MFLOPs; blocklab search prints the candidates' MFLOPs)"});
      else if (!std::is_sorted(banks.begin(), banks.end()))
        at("mflops_banks", "mflops_banks must increase", {});
    }
    if (trainer.get_string("objective") == "relation_kd") check_relation_kd(config, trainer, sampler, at, sink);
    if (sampler == "multi_arch" && trainer.get_int("sub_batches") > trainer.get_int("batch_size"))
      at("sub_batches",
         "sub_batches " + std::to_string(trainer.get_int("sub_batches")) + " is more than the batch size " +
             std::to_string(trainer.get_int("batch_size")),
         {"at most trainer.batch_size sub-batches"});
  };
  return check;
}

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(check_registered_) = register_task_check("supernet", supernet_check());

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("supernet")
                      .summary("weight-sharing supernet training: the sandwich rule (largest, smallest, random "
                               "subnets per step) with in-place distillation")
                      .paper("Universally Slimmable Networks (Yu & Huang, 2019), arXiv:1903.05134; BigNAS (Yu et "
                             "al., 2020), arXiv:2003.11142")
                      .equation("L = CE_ls(f_max(x), y) + sum_{s in min, rand_1..n} CE(f_s(x), sg(softmax(f_max(x)))))")
                      .schema(supernet_task_schema())
                      .example("{}"),
                  loop_task_factory(supernet_task_schema(),
                                    [](const TaskContext& context) -> std::unique_ptr<TaskHooks> {
                                      return std::make_unique<SupernetHooks>(context, supernet_task_schema());
                                    }));

}  // namespace
}  // namespace blocklab
