#pragma once
// The model's inputs for its two tasks, built from corpus batches; shared by training,
// validation and evaluation so that all three see exactly the same prompts.
//   solve       [bos][<text> question | <audio> frames][<sep>] -> solution [eos]
//   transcribe  [bos][<text> question | <audio> frames][</audio>] -> question [eos]
// for the built-in model, and their chat-template form for a Hugging Face one
// (vocabulary.hpp): the batch's ids are already the model's (open_corpus_for).
// (transcribe on text input is "repeat the question": the text stage teaches it, so that
// the align stage's transcription objective has a decoder that already knows how.)
#include <torch/torch.h>

#include <vector>

#include "cord/data/loader.hpp"
#include "cord/eval/vocabulary.hpp"
#include "cord/model/batch.hpp"

namespace cord::eval {

enum class Input { kText, kAudio };
enum class Task { kSolve, kTranscribe };
const char* input_name(Input input);  // "text", "audio"

// Rows of a right-padded [B, L] id tensor with its mask [B, L]; `eos` appended to each
// row when >= 0.
model::TokenRows token_rows(const at::Tensor& ids, const at::Tensor& mask, int64_t eos = -1);

// Response tokens item `item` of `batch` is trained on for `task`, eos included.
int64_t response_length(const data::Batch& batch, int64_t item, Task task);

// Right-padded training inputs: responses are the targets (loss on response tokens only).
// tasks[b] per item. Audio features are moved to the model's device.
model::DecoderBatch training_inputs(model::Lalm& model, const data::Batch& batch, Input input,
                                    const std::vector<Task>& tasks);

// Left-padded generation prompts (no responses), one task for the whole batch.
model::DecoderBatch generation_prompts(model::Lalm& model, const data::Batch& batch, Input input, Task task);

// Items [begin, end) of `batch`, with padding trimmed to the longest remaining item.
data::Batch slice_batch(const data::Batch& batch, int64_t begin, int64_t end);

}  // namespace cord::eval
