// Training against torch autograd on the transformers model
// (tools/make_training_fixtures.py): the gradient of every parameter on one
// batch, and the loss trajectory of 10 AdamW steps. The v3_mtp case adds two
// multi-token-prediction modules (DeepSeek-V3 §2.2) to the objective.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/config.h"
#include "train/optimizer.h"
#include "train/training_model.h"
#include "train/weights_io.h"
#include "test_util.h"

namespace dsv2 {
namespace {

Batch batch_from(const nlohmann::json& j, size_t index) {
  Batch b;
  b.batch = j["batch"];
  b.seq_len = j["seq_len"];
  for (const auto& row : j["ids"][index]) {
    const auto ids = row.get<std::vector<int32_t>>();
    b.inputs.insert(b.inputs.end(), ids.begin(), ids.end() - 1);
    b.targets.insert(b.targets.end(), ids.begin() + 1, ids.end());
  }
  b.droppable.assign(b.batch, 1);
  return b;
}

// The fixture's config with the MTP depth torch trained (transformers writes
// V3 configs with num_nextn_predict_layers 1 whether or not modules follow).
Config fixture_config(const std::string& dir, const nlohmann::json& batches) {
  Config config = load_config(dir);
  config.num_nextn_predict_layers = batches.value("mtp_depth", 0);
  return config;
}

void set_mtp_lambda(TrainingModel& model, const nlohmann::json& batches) {
  if (batches.contains("mtp_lambda")) model.set_mtp_lambda(batches["mtp_lambda"].get<double>());
}

class TrainingReference : public testing::TestWithParam<std::string> {};

TEST_P(TrainingReference, GradientsMatchTorchAutograd) {
  const std::string dir = test::fixture("training/" + GetParam());
  const auto batches = nlohmann::json::parse(test::read_bytes(dir + "/batch.json"));
  const Config config = fixture_config(dir, batches);
  TrainWeights tw(config);
  load_train_weights(tw, dir);
  TrainingModel model(tw, MoeTrainingOptions{});
  set_mtp_lambda(model, batches);
  tw.zero_grads();
  const StepResult r = model.run(batch_from(batches, 0), /*training=*/true, /*backward=*/true);
  EXPECT_NEAR(r.loss, batches["loss0"].get<double>(), 1e-5);
  if (config.num_nextn_predict_layers > 0) {
    EXPECT_NEAR(r.mtp_loss, batches["mtp_loss0"].get<double>(), 1e-5);
  }

  SafetensorsFile expected(dir + "/grads.safetensors");
  int checked = 0;
  for (const auto& info : tw.infos()) {
    if (!info.trained) continue;
    const TensorInfo* t = expected.find(info.name);
    ASSERT_NE(t, nullptr) << info.name;
    ASSERT_EQ(t->numel(), info.size) << info.name;
    // 1e-4 relative to the tensor's largest gradient (fp32 on both sides).
    EXPECT_TRUE(test::gradient_near(info.name, tw.grads.data() + info.offset, reinterpret_cast<const float*>(t->data), info.size));
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

// With the model frozen (--freeze-model) the modules' gradients are the same
// (they do not depend on whether the model takes one) and the model gets none.
TEST(TrainingReferenceMtp, FrozenModelGivesTheModulesTheirGradientsAndTheModelNone) {
  const std::string dir = test::fixture("training/v3_mtp");
  const auto batches = nlohmann::json::parse(test::read_bytes(dir + "/batch.json"));
  TrainWeights tw(fixture_config(dir, batches));
  load_train_weights(tw, dir);
  TrainingModel model(tw, MoeTrainingOptions{});
  set_mtp_lambda(model, batches);
  model.set_freeze_model(true);
  tw.zero_grads();
  const StepResult r = model.run(batch_from(batches, 0), true, true);
  EXPECT_NEAR(r.loss, batches["loss0"].get<double>(), 1e-5);
  EXPECT_NEAR(r.mtp_loss, batches["mtp_loss0"].get<double>(), 1e-5);
  SafetensorsFile expected(dir + "/grads.safetensors");
  int modules = 0;
  for (const auto& info : tw.infos()) {
    const float* got = tw.grads.data() + info.offset;
    if (!info.mtp) {
      for (int64_t i = 0; i < info.size; ++i) ASSERT_EQ(got[i], 0.0f) << info.name;
      continue;
    }
    if (!info.trained) continue;
    const TensorInfo* t = expected.find(info.name);
    ASSERT_NE(t, nullptr) << info.name;
    const float* want = reinterpret_cast<const float*>(t->data);
    double max_want = 0.0, max_diff = 0.0;
    for (int64_t i = 0; i < info.size; ++i) {
      max_want = std::max(max_want, std::fabs(double(want[i])));
      max_diff = std::max(max_diff, std::fabs(double(want[i]) - got[i]));
    }
    EXPECT_LE(max_diff, 1e-4 * max_want + 1e-9) << info.name;
    ++modules;
  }
  EXPECT_GT(modules, 20);
}

TEST_P(TrainingReference, AdamWTrajectoryMatchesTorch) {
  const std::string dir = test::fixture("training/" + GetParam());
  const auto batches = nlohmann::json::parse(test::read_bytes(dir + "/batch.json"));
  TrainWeights tw(fixture_config(dir, batches));
  load_train_weights(tw, dir);
  const auto trajectory = nlohmann::json::parse(test::read_bytes(dir + "/trajectory.json"));
  TrainingModel model(tw, MoeTrainingOptions{});
  set_mtp_lambda(model, batches);
  AdamW adam(tw, AdamWOptions{0.9, 0.95, 1e-8, 0.1});
  const auto losses = trajectory["losses"].get<std::vector<double>>();
  for (size_t step = 0; step < losses.size(); ++step) {
    tw.zero_grads();
    const StepResult r = model.run(batch_from(batches, step), true, true);
    EXPECT_NEAR(r.loss, losses[step], 1e-3) << "step " << step;
    if (getenv("DSV2_TRACE")) printf("step %zu dsv2 %.7f torch %.7f diff %.2e\n", step, r.loss, losses[step], r.loss - losses[step]);
    clip_grad_norm(tw, 1.0);
    adam.step(tw, trajectory["lr"].get<double>());
  }
}

INSTANTIATE_TEST_SUITE_P(Torch, TrainingReference, testing::Values("v2_lite", "v2_group_yarn", "v3_noaux", "v2_long", "v2_tiles", "v3_mtp"));

}  // namespace
}  // namespace dsv2
