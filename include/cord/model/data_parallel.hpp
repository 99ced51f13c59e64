#pragma once
// Data-parallel gradient averaging in flattened buckets, overlapped with backward.
//
// The parameters that require gradients are grouped, in reverse registration order (about
// the order backward produces their gradients), into buckets of about `bucket_mb`. Each
// parameter's .grad is a view into its bucket's flat buffer, so accumulation writes
// straight into the buffer. A post-accumulation hook on every parameter counts down its
// bucket; when the last gradient of a bucket is in, that bucket's all-reduce (average over
// the dp group) starts while backward goes on with earlier layers. finish() starts what is
// left (buckets with unused parameters) and waits for all: one collective per bucket.
//
// Invariants: at most one synchronised backward per finish(); zero_grad() zeroes the
// buffers in place (never set .grad to undefined, the views must survive); with gradient
// accumulation, disable sync for all but the last micro-batch.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "cord/comm/collectives.hpp"
#include "cord/comm/process_group.hpp"

namespace cord::model {

class GradientSynchronizer {
 public:
  GradientSynchronizer(const std::vector<at::Tensor>& parameters, comm::ProcessGroup dp_group, double bucket_mb);
  ~GradientSynchronizer();
  GradientSynchronizer(const GradientSynchronizer&) = delete;
  GradientSynchronizer& operator=(const GradientSynchronizer&) = delete;

  void set_sync_enabled(bool enabled) { sync_enabled_ = enabled; }
  // Completes the averaging of this step's gradients (no-op for a dp group of one).
  void finish();
  void zero_grad();
  size_t num_buckets() const { return buckets_.size(); }
  int64_t launched_during_backward() const { return launched_in_hooks_; }  // for tests and logs

 private:
  struct Bucket {
    at::Tensor buffer;  // flat, all gradients of the bucket
    std::vector<at::Tensor> params;
    int64_t pending = 0;  // gradients still to be accumulated in this backward
    bool launched = false;
    comm::Work work;
  };
  class AccumulateHook;
  void on_accumulated(size_t bucket);
  void launch(Bucket& bucket);

  comm::ProcessGroup dp_group_;
  std::vector<Bucket> buckets_;
  bool sync_enabled_ = true;
  int64_t launched_in_hooks_ = 0;
};

}  // namespace cord::model
