// task `seqcls`: sequence classification (Long Range Arena's ListOps and Image tasks: Tay et
// al. 2021, arXiv:2011.04006): right-padded token sequences with their lengths and a label
// each, the classification hooks of classify (experiments/tasks/classification.h) without
// augmentation. The model reads the lengths (attention masks padded keys, mean pooling counts
// valid tokens), so padding does not change a prediction. Experiments name the encoder:
//   blocklab run listops            (model: encoder_small, dataset: synthetic/listops)
//   blocklab run sfmnist            (dataset: image/sequential-fmnist)
#include "experiments/tasks/classification.h"

namespace blocklab {
namespace {

const ClassificationTask kSeqclsTask{{"sequences", "model/composed", "linear", "synthetic/listops"}, /*augment=*/false};

const Schema& seqcls_schema() {
  static const Schema schema = classification_schema(kSeqclsTask.defaults);
  return schema;
}

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(check_registered_) =
    register_task_check("seqcls", classification_check(seqcls_schema(), kSeqclsTask));

BLOCKLAB_REGISTER(task_registry(),
                  BLOCKLAB_ENTRY("seqcls")
                      .summary("sequence classification: padded token sequences with lengths, a label each")
                      .paper("Long Range Arena: A Benchmark for Efficient Transformers (Tay et al. 2021), "
                             "arXiv:2011.04006")
                      .equation("min_theta CE(head(mean_{n < len}(stack(stem(ids))_n)), y), label smoothing")
                      .schema(seqcls_schema())
                      .example("{}"),
                  classification_factory(seqcls_schema(), kSeqclsTask));

}  // namespace
}  // namespace blocklab
