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
// as the sampler says. One optimizer step takes the summed gradients. What a step trains is a
// function of (seed, global step), so a resumed run trains what the uninterrupted one did.
//
// Evaluation: the largest subnet (val/acc, test/acc: what selects the best checkpoint) and the
// smallest (val/smallest_acc, test/smallest_acc).
#include <algorithm>
#include <random>

#include "blocks/nas/samplers.h"
#include "blocks/nas/supernet.h"
#include "experiments/tasks/classification.h"

namespace blocklab {
namespace {

const SupervisedDefaults kSupernetDefaults{"images", "model/supernet", "linear", "fashion-mnist"};

const Schema& supernet_task_schema() {
  static const Schema schema = classification_schema(kSupernetDefaults, [](Schema& t) {
    t.add_choice("sampler", "sandwich", {"sandwich", "uniform", "multi_arch", "complexity_aware"},
                 "what a step trains: the sandwich rule (default), uniform random subnets, ViT-ResNAS's multi_arch "
                 "sub-batches, ElasticViT's complexity_aware FLOPs banks");
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
  }

  std::shared_ptr<torch::nn::Module> build_model() override {
    auto model = SupervisedHooks::build_model();
    supernet_ = std::dynamic_pointer_cast<SupernetImpl>(model_);
    if (!supernet_) throw std::logic_error("task supernet: the model is not a model/supernet");
    sampler_ =
        std::make_unique<SubnetSampler>(supernet_->space(), sampler_settings_,
                                        [net = supernet_.get()](const Subnet& s) { return net->subnet_macs(s) / 1e6; });
    return model;
  }

  Batch train_batch(std::int64_t epoch, std::int64_t index) override {
    step_ = epoch * batches_per_epoch() + index;
    return SupervisedHooks::train_batch(epoch, index);
  }

  torch::Tensor loss(const Batch& batch) override {
    namespace F = torch::nn::functional;
    const auto labels = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing());
    torch::Tensor total, teachers;  // teachers: the sum of the teaching subnets' probabilities
    double teaching = 0;
    for (const SampledSubnet& s : sampler_->at(seed_, step_)) {
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
    return result;
  }

 private:
  // Sub-batch `part` of `sub_batches` (torch::chunk's split: the last may be shorter).
  Batch sub_batch(const Batch& batch, std::int64_t part) const {
    const auto parts = sampler_settings_.sub_batches;
    return {batch.inputs.chunk(parts)[static_cast<std::size_t>(part)],
            batch.targets.chunk(parts)[static_cast<std::size_t>(part)],
            {}};
  }

  std::uint64_t seed_;
  SamplerSettings sampler_settings_;
  std::unique_ptr<SubnetSampler> sampler_;
  std::int64_t step_ = 0;
  Supernet supernet_;
};

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
    if (sampler == "complexity_aware") {
      const auto banks = trainer.get_float_list("mflops_banks");
      if (banks.empty())
        at("mflops_banks", "the complexity_aware sampler needs FLOPs banks",
           {"e.g. trainer.mflops_banks=[1,2,3,4] (MFLOPs; blocklab search prints the candidates' MFLOPs)"});
      else if (!std::is_sorted(banks.begin(), banks.end()))
        at("mflops_banks", "mflops_banks must increase", {});
    }
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
