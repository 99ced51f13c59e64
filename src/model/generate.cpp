#include "cord/model/generate.hpp"

#include "cord/core/error.hpp"

namespace cord::model {

namespace {

// probs [B, V] -> one draw per row, after nucleus truncation when top_p < 1.
at::Tensor draw(at::Tensor probs, double top_p, at::Generator& generator) {
  if (top_p < 1.0) {
    const auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    // Drop a token when the tokens ranked above it already reach top_p.
    const at::Tensor before = sorted.cumsum(-1) - sorted;
    probs = torch::zeros_like(probs).scatter(-1, order, sorted.masked_fill(before >= top_p, 0.0));
  }
  // Sampling runs on the CPU generator: the same draws whatever the device.
  return at::multinomial(probs.cpu(), 1, /*replacement=*/false, generator).squeeze(-1).to(probs.device());
}

}  // namespace

at::Tensor sample_tokens(const at::Tensor& logits, double temperature, double top_p, at::Generator& generator) {
  if (temperature <= 0) return logits.argmax(-1);
  return draw(torch::softmax(logits.to(torch::kFloat) / temperature, -1), top_p, generator);
}

at::Tensor sample_tokens(const at::Tensor& logits, const std::vector<double>& temperatures, double top_p,
                         at::Generator& generator) {
  CORD_CHECK(static_cast<int64_t>(temperatures.size()) == logits.size(0),
             "sample_tokens: " + std::to_string(temperatures.size()) + " temperatures for " +
                 std::to_string(logits.size(0)) + " rows");
  std::vector<double> divisors(temperatures.size());
  std::vector<uint8_t> greedy(temperatures.size());
  for (size_t b = 0; b < temperatures.size(); ++b) {
    greedy[b] = temperatures[b] <= 0 ? 1 : 0;
    divisors[b] = temperatures[b] <= 0 ? 1.0 : temperatures[b];
  }
  const at::Tensor divisor = torch::tensor(divisors, torch::kDouble).to(logits.device(), torch::kFloat).unsqueeze(1);
  const at::Tensor sampled = draw(torch::softmax(logits.to(torch::kFloat) / divisor, -1), top_p, generator);
  const at::Tensor is_greedy = torch::tensor(std::vector<int64_t>(greedy.begin(), greedy.end()), torch::kLong)
                                   .to(logits.device())
                                   .to(torch::kBool);
  return torch::where(is_greedy, logits.argmax(-1), sampled);
}

Generation generate(Lalm& model, const DecoderBatch& prompts, const SpecialTokens& tokens,
                    const SamplingOptions& options, at::Generator& generator, const StepObserver& observer) {
  torch::NoGradGuard no_grad;
  const comm::ProcessGroup& tp = model->tp_group();
  const int64_t batch = prompts.embeds.size(0);
  const int64_t prompt_width = prompts.embeds.size(1);
  const at::Device device = prompts.embeds.device();
  const int64_t capacity = prompt_width + options.max_new_tokens;
  CORD_CHECK(capacity <= model->config().max_seq_len,
             "prompt (" + std::to_string(prompt_width) + ") + max_new_tokens (" + std::to_string(options.max_new_tokens) +
                 ") exceeds model.max_seq_len " + std::to_string(model->config().max_seq_len));

  Generation result;
  result.tokens.resize(static_cast<size_t>(batch));
  std::vector<bool> finished(static_cast<size_t>(batch), false);
  at::Tensor valid = prompts.valid;                   // grows by one column per step
  at::Tensor next_position = prompts.positions.select(1, prompt_width - 1) + 1;  // [B]
  at::Tensor sequence = prompts.embeds;               // only for the no-cache path

  KvCache cache;
  at::Tensor logits;
  if (options.use_kv_cache) {
    cache = model->decoder->make_cache(batch, capacity);
    logits = model->decoder->forward(prompts.embeds, prompts.positions, prompts.mask, &cache).select(1, -1);
  } else {
    logits = model->decoder->forward(prompts.embeds, prompts.positions, prompts.mask).select(1, -1);
  }

  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    const at::Tensor full = gather_vocab(logits, tp, model->config().vocab_size).to(torch::kFloat);  // [B, V]
    if (observer) observer(step, full);
    at::Tensor next = options.temperatures.empty()
                          ? sample_tokens(full, options.temperature, options.top_p, generator)
                          : sample_tokens(full, options.temperatures, options.top_p, generator);
    const at::Tensor next_cpu = next.cpu();
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      if (finished[static_cast<size_t>(b)]) {
        next_cpu[b] = tokens.pad;
        continue;
      }
      const int64_t token = next_cpu[b].item<int64_t>();
      result.tokens[static_cast<size_t>(b)].push_back(token);
      finished[static_cast<size_t>(b)] = token == tokens.eos;
      all_done = all_done && finished[static_cast<size_t>(b)];
    }
    if (all_done || step + 1 == options.max_new_tokens) break;

    next = next_cpu.to(device).unsqueeze(1);                        // [B, 1]
    const at::Tensor embeds = model->decoder->embed(next);          // [B, 1, d]
    const at::Tensor positions = next_position.unsqueeze(1);        // [B, 1]
    valid = torch::cat({valid, torch::ones({batch, 1}, valid.options())}, 1);
    next_position = next_position + 1;
    if (options.use_kv_cache) {
      // The new position attends to every real key so far and to itself: [B, 1, 1, S].
      const AttentionMask mask{false, valid.unsqueeze(1).unsqueeze(1)};
      logits = model->decoder->forward(embeds, positions, mask, &cache).select(1, -1);
    } else {
      sequence = torch::cat({sequence, embeds}, 1);
      logits = model->decoder->forward(sequence, left_padded_positions(valid), left_padded_mask(valid)).select(1, -1);
    }
  }
  return result;
}

}  // namespace cord::model

