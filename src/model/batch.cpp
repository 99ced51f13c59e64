#include "cord/model/batch.hpp"

#include <algorithm>

#include "cord/core/error.hpp"

namespace cord::model {
namespace {

// One sequence laid out as token ids, with the slots that audio frames will fill.
struct Layout {
  std::vector<int64_t> ids;
  int64_t middle_begin = 0;  // first question / frame slot
  int64_t middle_length = 0;
  int64_t prompt_length = 0;  // through [sep]
  bool audio = false;         // the middle slots take audio frames
};

Layout lay_out(const std::vector<int64_t>* question, int64_t frames, const std::vector<int64_t>& response,
               PromptEnd prompt_end, const SpecialTokens& tokens) {
  Layout layout;
  layout.ids = tokens.opening(/*audio_input=*/question == nullptr);
  layout.middle_begin = static_cast<int64_t>(layout.ids.size());
  if (question != nullptr) {
    layout.ids.insert(layout.ids.end(), question->begin(), question->end());
    layout.middle_length = static_cast<int64_t>(question->size());
  } else {
    layout.ids.insert(layout.ids.end(), static_cast<size_t>(frames), tokens.pad);  // replaced by frames
    layout.middle_length = frames;
    layout.audio = true;
    layout.ids.insert(layout.ids.end(), tokens.audio_close.begin(), tokens.audio_close.end());
  }
  const std::vector<int64_t> close = tokens.closing(prompt_end);
  layout.ids.insert(layout.ids.end(), close.begin(), close.end());
  layout.prompt_length = static_cast<int64_t>(layout.ids.size());
  layout.ids.insert(layout.ids.end(), response.begin(), response.end());
  return layout;
}

DecoderBatch assemble(Lalm& model, const std::vector<Layout>& layouts, const at::Tensor& audio_frames,
                      const SpecialTokens& tokens, Padding padding) {
  const int64_t batch = static_cast<int64_t>(layouts.size());
  CORD_CHECK(batch > 0, "empty batch");
  int64_t width = 0;
  for (const Layout& l : layouts) width = std::max<int64_t>(width, static_cast<int64_t>(l.ids.size()));
  CORD_CHECK(width <= model->config().max_seq_len,
             "sequence of " + std::to_string(width) + " positions exceeds model.max_seq_len " +
                 std::to_string(model->config().max_seq_len));

  const auto long_options = torch::TensorOptions().dtype(torch::kLong);
  at::Tensor ids = torch::full({batch, width}, tokens.pad, long_options);
  at::Tensor valid = torch::zeros({batch, width}, torch::kBool);
  at::Tensor frame_slots = torch::zeros({batch, width}, torch::kBool);
  at::Tensor targets = torch::full({batch, width}, -1, long_options);
  DecoderBatch out;
  auto ids_a = ids.accessor<int64_t, 2>();
  auto valid_a = valid.accessor<bool, 2>();
  auto slots_a = frame_slots.accessor<bool, 2>();
  auto targets_a = targets.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    const Layout& l = layouts[static_cast<size_t>(b)];
    const int64_t length = static_cast<int64_t>(l.ids.size());
    const int64_t offset = padding == Padding::kLeft ? width - length : 0;
    for (int64_t i = 0; i < length; ++i) {
      ids_a[b][offset + i] = l.ids[static_cast<size_t>(i)];
      valid_a[b][offset + i] = true;
      // Response token i (i >= prompt_length) is predicted at position i - 1.
      if (i >= l.prompt_length) targets_a[b][offset + i - 1] = l.ids[static_cast<size_t>(i)];
    }
    if (l.audio) {
      for (int64_t i = 0; i < l.middle_length; ++i) slots_a[b][offset + l.middle_begin + i] = true;
    }
    out.lengths.push_back(length);
    out.prompt_lengths.push_back(l.prompt_length);
  }

  const at::Device device = model->decoder->embedding->weight.device();
  ids = ids.to(device);
  out.valid = valid.to(device);
  out.targets = targets.to(device);
  out.embeds = model->decoder->embed(ids);
  if (audio_frames.defined()) {
    // Frames fill their slots in row-major order: sequence by sequence, frame by frame.
    const at::Tensor slots = frame_slots.to(device).unsqueeze(-1).expand_as(out.embeds);
    // Under bf16 autocast the projector's frames are bf16; the residual stream is float32.
    out.embeds = out.embeds.masked_scatter(slots, audio_frames.to(out.embeds.scalar_type()));
  }
  if (padding == Padding::kLeft) {
    out.positions = left_padded_positions(out.valid);
    out.mask = left_padded_mask(out.valid);
  } else {
    out.positions = torch::arange(width, long_options.device(device)).unsqueeze(0).expand({batch, width});
    out.mask.causal = true;
  }
  return out;
}

PromptEnd prompt_end_of(const std::vector<PromptEnd>& prompt_ends, size_t b, size_t batch) {
  if (prompt_ends.empty()) return PromptEnd::kSolve;
  CORD_CHECK(prompt_ends.size() == batch, "prompt_ends and the batch differ in count");
  return prompt_ends[b];
}

}  // namespace

std::vector<int64_t> SpecialTokens::opening(bool audio_input) const {
  const std::vector<int64_t>& run = audio_input ? audio_open : text_open;
  if (!run.empty()) return run;
  return {bos, audio_input ? audio : text};
}

std::vector<int64_t> SpecialTokens::closing(PromptEnd end) const {
  const std::vector<int64_t>& run = end == PromptEnd::kSolve ? solve_close : transcribe_close;
  if (!run.empty()) return run;
  return {end == PromptEnd::kSolve ? sep : transcribe};
}

DecoderBatch assemble_text(Lalm& model, const TokenRows& questions, const TokenRows& responses,
                           const SpecialTokens& tokens, Padding padding, const std::vector<PromptEnd>& prompt_ends) {
  CORD_CHECK(questions.size() == responses.size(), "questions and responses differ in count");
  std::vector<Layout> layouts;
  for (size_t b = 0; b < questions.size(); ++b) {
    layouts.push_back(
        lay_out(&questions[b], 0, responses[b], prompt_end_of(prompt_ends, b, questions.size()), tokens));
  }
  return assemble(model, layouts, at::Tensor(), tokens, padding);
}

DecoderBatch assemble_audio(Lalm& model, const at::Tensor& mel, const at::Tensor& mel_lengths,
                            const TokenRows& responses, const SpecialTokens& tokens, Padding padding,
                            const std::vector<PromptEnd>& prompt_ends) {
  CORD_CHECK(mel.size(0) == static_cast<int64_t>(responses.size()), "mel batch and responses differ in count");
  const auto [frames, frame_lengths] = model->encode_audio(mel, mel_lengths);
  const at::Tensor lengths_cpu = frame_lengths.cpu();
  std::vector<Layout> layouts;
  for (size_t b = 0; b < responses.size(); ++b) {
    const int64_t n = lengths_cpu[static_cast<int64_t>(b)].item<int64_t>();
    CORD_CHECK(n > 0, "audio clip " + std::to_string(b) + " is too short to give one projected frame");
    layouts.push_back(lay_out(nullptr, n, responses[b], prompt_end_of(prompt_ends, b, responses.size()), tokens));
  }
  // The valid frames, flattened in (sequence, frame) order: [sum_b N_b, d].
  const at::Tensor frame_index = torch::arange(frames.size(1), frame_lengths.options());
  const at::Tensor valid_frames = frames.index({frame_index.unsqueeze(0) < frame_lengths.unsqueeze(1)});
  return assemble(model, layouts, valid_frames, tokens, padding);
}

DecoderBatch assemble_sequences(Lalm& model, const at::Tensor& frames, const at::Tensor& frame_lengths,
                                const std::vector<SequenceSpec>& sequences, const SpecialTokens& tokens,
                                Padding padding) {
  std::vector<Layout> layouts;
  std::vector<at::Tensor> audio_pieces;  // each audio sequence's valid frames [N_b, d], in order
  const at::Tensor lengths_cpu = frame_lengths.defined() ? frame_lengths.cpu() : at::Tensor();
  for (const SequenceSpec& sequence : sequences) {
    const PromptEnd end = sequence.prompt_end;
    if (sequence.audio_row < 0) {
      layouts.push_back(lay_out(&sequence.question, 0, sequence.response, end, tokens));
      continue;
    }
    CORD_CHECK(frames.defined() && sequence.audio_row < frames.size(0),
               "audio row " + std::to_string(sequence.audio_row) + " has no encoded frames");
    const int64_t n = lengths_cpu[sequence.audio_row].item<int64_t>();
    CORD_CHECK(n > 0, "audio clip " + std::to_string(sequence.audio_row) + " is too short to give one projected frame");
    layouts.push_back(lay_out(nullptr, n, sequence.response, end, tokens));
    audio_pieces.push_back(frames[sequence.audio_row].narrow(0, 0, n));
  }
  return assemble(model, layouts, audio_pieces.empty() ? at::Tensor() : torch::cat(audio_pieces, 0), tokens, padding);
}

at::Tensor left_padded_positions(const at::Tensor& valid) {
  return (valid.to(torch::kLong).cumsum(1) - 1).clamp_min(0);
}

AttentionMask left_padded_mask(const at::Tensor& valid) {
  const int64_t width = valid.size(1);
  const at::Tensor causal = torch::ones({width, width}, valid.options()).tril();
  const at::Tensor self = torch::eye(width, valid.options());
  // allow[b, t, s] = s <= t and (key s is real or s == t)
  const at::Tensor allow = causal.unsqueeze(0) & (valid.unsqueeze(1) | self.unsqueeze(0));
  return AttentionMask{false, allow.unsqueeze(1)};
}

TokenLoss response_cross_entropy(const at::Tensor& logits_shard, const at::Tensor& targets,
                                 const comm::ProcessGroup& tp_group) {
  // Softmax math in float32 at least (bf16 logits on GPU).
  const at::Tensor logits =
      at::isReducedFloatingType(logits_shard.scalar_type()) ? logits_shard.to(torch::kFloat) : logits_shard;
  const at::Tensor per_position = vocab_parallel_cross_entropy(logits, targets, tp_group);
  const at::Tensor counted = targets >= 0;
  return {(per_position * counted.to(per_position.scalar_type())).sum(), counted.sum().item<int64_t>()};
}

}  // namespace cord::model
