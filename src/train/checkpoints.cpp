#include "train/checkpoints.h"

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "dist/runtime.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/weights_io.h"

namespace dsv2 {

namespace fs = std::filesystem;

namespace {

std::string optimizer_file(int rank) { return "optimizer-rank" + std::to_string(rank) + ".safetensors"; }

}  // namespace

void save_whole_model(const TrainWeights& tw, const dist::ParallelLayout& layout, const std::string& dir, bool bf16) {
  const Config& c = tw.config();
  const int64_t R = tw.replicated_size();
  // The first expert-parallel group (data-parallel index 0) holds every expert once.
  std::vector<std::vector<float>> regions;
  if (layout.replicas.rank() == 0) {
    const auto parts = layout.experts.gather(tw.values.data() + R, (tw.values.size() - R) * sizeof(float), 0);
    for (const std::string& part : parts) {
      regions.emplace_back(part.size() / sizeof(float));
      if (!part.empty()) std::memcpy(regions.back().data(), part.data(), part.size());
    }
  }
  dist::run_on_all_ranks(layout.world, [&] {
    if (!layout.world.is_root()) return;
    const ParameterLayout whole = parameter_layout(c, {c.n_routed_experts, 1, 0});
    std::vector<ParameterLayout> per_rank;
    for (int r = 0; r < layout.expert_parallel(); ++r)
      per_rank.push_back(parameter_layout(c, {c.n_routed_experts, layout.expert_parallel(), r}));
    std::vector<ParameterValues> tensors;
    for (const ParameterInfo& info : whole.infos) {
      if (info.routed_expert < 0) {
        tensors.push_back({&info, tw.values.data() + info.offset});
        continue;
      }
      const int owner = layout.placement.owner(info.routed_expert);
      tensors.push_back({&info, regions[owner].data() + (per_rank[owner].offsets[info.slot] - R)});
    }
    save_model_dir(c, tensors, dir, bf16);
  });
}

void save_checkpoint(const std::string& out, const TrainWeights& tw, const AdamW& adam, const TrainingState& state,
                     const std::string& options_json, const dist::ParallelLayout& layout, const std::string& tokenizer_dir) {
  const dist::Communicator& all = layout.world;
  const std::string name = "checkpoint-" + std::to_string(state.step);
  const fs::path tmp = fs::path(out) / (name + ".tmp"), final_dir = fs::path(out) / name;
  dist::run_on_all_ranks(all, [&] {
    if (!all.is_root()) return;
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  });
  save_whole_model(tw, layout, tmp.string(), false);
  dist::run_on_all_ranks(all, [&] {
    const auto& m = adam.m();
    const auto& v = adam.v();
    const std::vector<int64_t> shape{static_cast<int64_t>(m.size())};
    write_safetensors((tmp / optimizer_file(all.rank())).string(),
                      {{"exp_avg", DType::F32, shape, m.data(), m.size() * 4}, {"exp_avg_sq", DType::F32, shape, v.data(), v.size() * 4}});
    if (!all.is_root()) return;
    const nlohmann::json j = {{"step", state.step},
                              {"tokens", state.tokens},
                              {"adam_steps", adam.steps()},
                              {"sampler", state.sampler},
                              {"ranks", all.size()},
                              {"expert_parallel", layout.expert_parallel()},
                              {"options", nlohmann::json::parse(options_json)}};
    write_file_atomically((tmp / "state.json").string(), j.dump(1));
    // The tokenizer too, so that a checkpoint is a model directory every command
    // takes (dsv2 niah -m OUT/checkpoint-N, dsv2 eval, dsv2 generate).
    if (!tokenizer_dir.empty()) Tokenizer::copy_files(tokenizer_dir, tmp.string());
  });
  dist::run_on_all_ranks(all, [&] {
    if (!all.is_root()) return;
    fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
    write_file_atomically((fs::path(out) / "latest").string(), name + "\n");
    for (const auto& entry : fs::directory_iterator(out)) {  // keep only the newest
      const std::string n = entry.path().filename().string();
      if (n.rfind("checkpoint-", 0) == 0 && n != name) fs::remove_all(entry.path());
    }
  });
}

TrainingState load_checkpoint(const std::string& out, TrainWeights& tw, AdamW& adam, const dist::ParallelLayout& layout) {
  std::string name = read_text_file((fs::path(out) / "latest").string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  const fs::path dir = fs::path(out) / name;
  const auto j = nlohmann::json::parse(read_text_file((dir / "state.json").string()));
  const int ranks = j.value("ranks", 1), expert_parallel = j.value("expert_parallel", 1);
  if (ranks != layout.world.size() || expert_parallel != layout.expert_parallel())
    throw Error(dir.string() + " was written by " + std::to_string(ranks) + " rank(s) with --expert-parallel " +
                std::to_string(expert_parallel) + "; resume it with the same (this job: " +
                std::to_string(layout.world.size()) + " rank(s), --expert-parallel " +
                std::to_string(layout.expert_parallel()) + ")");
  load_train_weights(tw, dir.string());
  const std::string path = (dir / optimizer_file(layout.world.rank())).string();
  SafetensorsFile moments(path);
  for (auto [name_in_file, buffer] : {std::pair{"exp_avg", &adam.m()}, std::pair{"exp_avg_sq", &adam.v()}}) {
    const TensorInfo* t = moments.find(name_in_file);
    require(t && t->dtype == DType::F32 && t->numel() == static_cast<int64_t>(buffer->size()),
            path + ": '" + name_in_file + "' missing or not this rank's partition of the optimizer state");
    if (t->nbytes > 0) std::memcpy(buffer->data(), t->data, t->nbytes);
  }
  adam.set_steps(j["adam_steps"].get<int64_t>());
  return {j["step"].get<int64_t>(), j["tokens"].get<int64_t>(), j["sampler"].get<std::string>()};
}

}  // namespace dsv2
