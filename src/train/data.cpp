#include "train/data.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "tokenizer/tokenizer.h"

namespace dsv2 {

namespace {
constexpr char kMagic[8] = {'D', 'S', 'V', '2', 'T', 'O', 'K', '1'};
}

size_t validation_cut(const std::string& text, double validation_share) {
  require(validation_share >= 0.0 && validation_share < 1.0, "validation share must be in [0, 1)");
  if (validation_share == 0.0) return text.size();
  const size_t cut = static_cast<size_t>(static_cast<double>(text.size()) * (1.0 - validation_share));
  const size_t newline = text.find('\n', cut);
  return newline == std::string::npos ? text.size() : newline + 1;
}

TokenData tokenize_files(const std::vector<std::string>& files, const Tokenizer& tokenizer, double validation_share) {
  TokenData data;
  for (const auto& file : files) {
    const std::string text = read_text_file(file);
    const size_t cut = validation_cut(text, validation_share);
    for (auto [part, stream] : {std::pair{text.substr(0, cut), &data.train}, std::pair{text.substr(cut), &data.validation}}) {
      if (part.empty()) continue;
      const auto ids = tokenizer.encode(part, {true, false});
      stream->tokens.insert(stream->tokens.end(), ids.begin(), ids.end());
      stream->bytes += static_cast<int64_t>(part.size());
    }
  }
  return data;
}

void save_token_data(const TokenData& data, const std::string& path) {
  AtomicFile out(path);
  out.write(kMagic, sizeof kMagic);
  for (const TokenStream* s : {&data.train, &data.validation}) {
    const int64_t header[2] = {static_cast<int64_t>(s->tokens.size()), s->bytes};
    out.write(header, sizeof header);
    out.write(s->tokens.data(), s->tokens.size() * sizeof(int32_t));
  }
  out.commit();
}

TokenData load_token_data(const std::string& path) {
  const std::string bytes = read_text_file(path);
  require(bytes.size() >= sizeof kMagic && std::memcmp(bytes.data(), kMagic, sizeof kMagic) == 0,
          path + ": not a dsv2 token file (made by 'dsv2 pretokenize')");
  TokenData data;
  size_t pos = sizeof kMagic;
  for (TokenStream* s : {&data.train, &data.validation}) {
    int64_t header[2];
    require(bytes.size() >= pos + sizeof header, path + ": truncated");
    std::memcpy(header, bytes.data() + pos, sizeof header);
    pos += sizeof header;
    require(header[0] >= 0 && header[1] >= 0 && bytes.size() - pos >= static_cast<size_t>(header[0]) * sizeof(int32_t),
            path + ": truncated or corrupt token counts");
    s->tokens.resize(static_cast<size_t>(header[0]));
    std::memcpy(s->tokens.data(), bytes.data() + pos, s->tokens.size() * sizeof(int32_t));
    pos += s->tokens.size() * sizeof(int32_t);
    s->bytes = header[1];
  }
  return data;
}

PasskeyFormat PasskeyFormat::from(const Tokenizer& tokenizer) {
  PasskeyFormat f;
  const EncodeOptions plain{false, false};
  f.needle_prefix = tokenizer.encode("The secret number is", plain);
  f.before_digits = tokenizer.encode(" ", plain);
  f.needle_end = tokenizer.encode(".", plain);
  f.question = tokenizer.encode("\nThe secret number is", plain);
  for (int d = 0; d < 10; ++d) {
    const std::vector<int32_t> ids = tokenizer.encode(std::string(1, static_cast<char>('0' + d)), plain);
    require(ids.size() == 1, "passkey episodes need each digit to be one token (a DeepSeek pre-tokenizer splits digits)");
    f.digits[d] = ids[0];
  }
  // "The secret number is 58213" must be these pieces in a row, or the model would learn another spelling.
  const std::vector<int32_t> whole = tokenizer.encode("The secret number is 58213.", plain);
  std::vector<int32_t> pieces = f.needle_prefix;
  pieces.insert(pieces.end(), f.before_digits.begin(), f.before_digits.end());
  for (int d : {5, 8, 2, 1, 3}) pieces.push_back(f.digits[d]);
  pieces.insert(pieces.end(), f.needle_end.begin(), f.needle_end.end());
  require(whole == pieces, "passkey episodes: this tokenizer does not split 'The secret number is 58213.' into its pieces");
  return f;
}

BatchSampler::BatchSampler(const TokenStream& stream, uint64_t seed, double never_drop_share, double passkey_share,
                           const PasskeyFormat* passkey)
    : stream_(stream), rng_(seed), never_drop_share_(never_drop_share), passkey_share_(passkey ? passkey_share : 0.0),
      passkey_(passkey) {}

std::vector<int32_t> BatchSampler::passkey_episode(int64_t seq_len) {
  const PasskeyFormat& f = *passkey_;
  std::vector<int32_t> number(f.before_digits);
  for (int i = 0; i < PasskeyFormat::kDigits; ++i) number.push_back(f.digits[i == 0 ? 1 + rng_() % 9 : rng_() % 10]);
  std::vector<int32_t> needle(f.needle_prefix);
  needle.insert(needle.end(), number.begin(), number.end());
  needle.insert(needle.end(), f.needle_end.begin(), f.needle_end.end());
  // The answer completes the needle sentence, full stop included: without it a
  // model that copies the digits does not learn where the number ends.
  std::vector<int32_t> tail(f.question);
  tail.insert(tail.end(), number.begin(), number.end());
  tail.insert(tail.end(), f.needle_end.begin(), f.needle_end.end());
  const int64_t hay = seq_len + 1 - static_cast<int64_t>(needle.size() + tail.size());
  require(hay >= 0 && static_cast<int64_t>(stream_.tokens.size()) >= hay, "passkey episodes need longer sequences and more text");
  const int64_t start = static_cast<int64_t>(rng_() % static_cast<uint64_t>(stream_.tokens.size() - hay + 1));
  const int64_t depth = static_cast<int64_t>(rng_() % static_cast<uint64_t>(hay + 1));
  const int32_t* text = stream_.tokens.data() + start;
  std::vector<int32_t> episode(text, text + depth);
  episode.insert(episode.end(), needle.begin(), needle.end());
  episode.insert(episode.end(), text + depth, text + hay);
  episode.insert(episode.end(), tail.begin(), tail.end());
  return episode;
}

Batch BatchSampler::next(int64_t sequences, int64_t seq_len) {
  const int64_t available = static_cast<int64_t>(stream_.tokens.size()) - seq_len - 1;
  require(available > 0, "training data has " + std::to_string(stream_.tokens.size()) + " tokens, fewer than seq_len + 1");
  Batch b;
  b.batch = sequences;
  b.seq_len = seq_len;
  std::vector<int32_t> episode;
  for (int64_t s = 0; s < sequences; ++s) {
    const bool passkey = passkey_share_ > 0.0 && static_cast<double>(rng_() >> 11) * 0x1.0p-53 < passkey_share_;
    const int32_t* p = nullptr;
    if (passkey) {
      episode = passkey_episode(seq_len);
      p = episode.data();
    } else {
      p = stream_.tokens.data() + static_cast<int64_t>(rng_() % static_cast<uint64_t>(available + 1));
    }
    b.inputs.insert(b.inputs.end(), p, p + seq_len);
    b.targets.insert(b.targets.end(), p + 1, p + seq_len + 1);
    if (passkey && passkey_->answer_only_loss) {
      std::fill(b.targets.end() - seq_len, b.targets.end() - passkey_->answer_tokens(), -1);
    }
    // ~never_drop_share of sequences are exempt from token dropping (DeepSeek-V2 §3.1.3 keeps ~10%).
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    b.droppable.push_back(u >= never_drop_share_ ? 1 : 0);
  }
  return b;
}

std::string BatchSampler::state() const {
  std::ostringstream ss;
  ss << rng_;
  return ss.str();
}

void BatchSampler::set_state(const std::string& state) {
  std::istringstream ss(state);
  ss >> rng_;
  require(!ss.fail(), "corrupt data-sampler state in the checkpoint");
}

std::vector<Batch> evaluation_batches(const TokenStream& stream, int64_t seq_len, int64_t per_batch, int64_t max_batches) {
  std::vector<Batch> batches;
  const int64_t windows = (static_cast<int64_t>(stream.tokens.size()) - 1) / seq_len;
  for (int64_t w = 0; w < windows && static_cast<int64_t>(batches.size()) < max_batches;) {
    Batch b;
    b.seq_len = seq_len;
    for (; b.batch < per_batch && w < windows; ++w, ++b.batch) {
      const int32_t* p = stream.tokens.data() + w * seq_len;
      b.inputs.insert(b.inputs.end(), p, p + seq_len);
      b.targets.insert(b.targets.end(), p + 1, p + seq_len + 1);
      b.droppable.push_back(0);
    }
    batches.push_back(std::move(b));
  }
  return batches;
}

std::string plan_state(const std::string& kind, int64_t cursor, uint64_t fingerprint) {
  return kind + " " + std::to_string(cursor) + " " + std::to_string(fingerprint);
}

int64_t plan_cursor(const std::string& state, const std::string& kind, int64_t end, uint64_t fingerprint,
                    const std::string& command, const std::string& plan_options) {
  std::istringstream ss(state);
  std::string got_kind;
  int64_t cursor = -1;
  uint64_t got_fingerprint = 0;
  ss >> got_kind >> cursor >> got_fingerprint;
  if (ss.fail() || got_kind != kind || cursor < 0 || cursor > end)
    throw Error("the checkpoint was not written by " + command + " (or its data state is corrupt)");
  if (got_fingerprint != fingerprint)
    throw Error("the checkpoint was made with other " + plan_options + ": resume with the same ones");
  return cursor;
}

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  std::mt19937_64 rng(seed * 1000003ull + static_cast<uint64_t>(epoch));
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

}  // namespace dsv2
