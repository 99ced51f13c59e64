#pragma once
// Input assembly for the two conditionings of one question, and the response loss.
//
//   audio: [bos][audio][frame_1 ... frame_N][audio_close][sep][response ...]
//   text:  [bos][text][question tokens ...][sep][response ...]
//
// The token closing the prompt names the task: [sep] asks for the solution, [transcribe]
// in its place asks for the question back (a transcript of the audio, or a repeat of the
// text), so one model both solves and transcribes. A chat-formatted model (a Hugging Face
// decoder, eval/vocabulary.hpp) has token runs of its template in place of [bos][text],
// [bos][audio], [sep] and [transcribe]; the layout is otherwise the same.
//
// Both go through the same decoder. Training batches are right-padded (causal attention;
// padding only follows real tokens); generation prompts are left-padded so that every
// sequence's next token lands in the same slot of the KV cache, with padding masked out
// and positions counted from each sequence's first real token.
// targets[b, t] is the token at t + 1 when that token belongs to the response, else -1:
// the loss covers response tokens only.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "cord/model/lalm.hpp"

namespace cord::model {

// What closes a prompt, and so which task it asks for.
enum class PromptEnd { kSolve, kTranscribe };

struct SpecialTokens {
  int64_t bos = 0;
  int64_t eos = 1;
  int64_t pad = 2;
  int64_t audio = 3;  // marks an audio-conditioned prompt
  int64_t text = 4;   // marks a text-conditioned prompt
  int64_t sep = 5;    // ends the question, starts the response (solve)
  int64_t transcribe = 6;  // ends the question, asks for the question back (transcribe / repeat)
  // Token runs that replace the single tokens above when not empty (a chat template's):
  // before the question text / before the frames, and after the question for each task.
  std::vector<int64_t> text_open, audio_open, solve_close, transcribe_close;
  // Tokens right after the frames, before the closing run (Qwen2-Audio's <|audio_eos|> and
  // what its template puts after it); empty for every other model.
  std::vector<int64_t> audio_close;

  // [bos][audio] or [bos][text], or the run that replaces it.
  std::vector<int64_t> opening(bool audio_input) const;
  // [sep] or [transcribe], or the run that replaces it.
  std::vector<int64_t> closing(PromptEnd end) const;
};

enum class Padding { kRight, kLeft };

using TokenRows = std::vector<std::vector<int64_t>>;

struct DecoderBatch {
  at::Tensor embeds;     // [B, T, d]
  at::Tensor positions;  // [B, T] int64
  at::Tensor valid;      // [B, T] bool, false on padding
  at::Tensor targets;    // [B, T] int64, -1 where no loss
  AttentionMask mask;
  std::vector<int64_t> lengths;         // real positions per sequence
  std::vector<int64_t> prompt_lengths;  // positions up to and including [sep]
};

// questions[b], responses[b] (responses may be empty: a generation prompt).
// prompt_ends[b]: what closes prompt b; empty = PromptEnd::kSolve for every sequence.
DecoderBatch assemble_text(Lalm& model, const TokenRows& questions, const TokenRows& responses,
                           const SpecialTokens& tokens, Padding padding,
                           const std::vector<PromptEnd>& prompt_ends = {});

// mel [B, F, n_mels] with mel_lengths [B] (int64, valid frames).
DecoderBatch assemble_audio(Lalm& model, const at::Tensor& mel, const at::Tensor& mel_lengths,
                            const TokenRows& responses, const SpecialTokens& tokens, Padding padding,
                            const std::vector<PromptEnd>& prompt_ends = {});

// One sequence of a mixed batch: an audio prompt (clip `audio_row` of the encoded frames)
// or a text prompt (`question`), closed by `prompt_end`, then `response`.
struct SequenceSpec {
  int64_t audio_row = -1;         // row of `frames` in assemble_sequences, or -1: text prompt
  std::vector<int64_t> question;  // the text prompt's tokens (audio_row < 0)
  std::vector<int64_t> response;
  PromptEnd prompt_end = PromptEnd::kSolve;
};

// Audio and text sequences in one batch, in `sequences` order. frames [A, N, d] and
// frame_lengths [A] come from model->encode_audio (undefined when no sequence is audio);
// several sequences may share one clip (its frames are encoded once and, under autograd,
// receive the gradients of all of them).
DecoderBatch assemble_sequences(Lalm& model, const at::Tensor& frames, const at::Tensor& frame_lengths,
                                const std::vector<SequenceSpec>& sequences, const SpecialTokens& tokens,
                                Padding padding);

// Mask and positions for left-padded sequences: valid [B, T] ->
// allow [B, 1, T, T] (causal, real keys only, each position always sees itself so no row
// is empty) and positions [B, T] (0 at each sequence's first real token).
AttentionMask left_padded_mask(const at::Tensor& valid);
at::Tensor left_padded_positions(const at::Tensor& valid);

// Sum over positions with targets >= 0 of -log p(target), and how many there are.
struct TokenLoss {
  at::Tensor sum;  // scalar, differentiable
  int64_t tokens = 0;
};
TokenLoss response_cross_entropy(const at::Tensor& logits_shard, const at::Tensor& targets,
                                 const comm::ProcessGroup& tp_group);

}  // namespace cord::model
