// vision_internal.hpp: what clip.cpp and classifier.cpp share — a
// configuration stored as JSON in safetensors metadata, a parameter list
// for the name tests, and the transformer pieces both towers use.
#ifndef SF_ML_VISION_INTERNAL_HPP
#define SF_ML_VISION_INTERNAL_HPP

#include "ml/shim_internal.hpp"
#include "ml/sf_vision.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

// A field of a config struct, for JSON round trips: ints and floats by
// offset, so that the metadata names every field and a new field is one line.
struct VisionField {
    const char *key;
    size_t off;
    int is_float;
};

// Writes `fields` of `base` as one JSON object (malloc'd, caller frees).
char *sf_vision_config_json(const void *base, const VisionField *fields, size_t n);
// Reads them back; fields absent from the JSON keep their values.
int sf_vision_config_parse(const char *json, void *base, const VisionField *fields, size_t n,
                           char *err, size_t errlen);

// Parameter names and shapes in module order, kept for the name listing.
struct ParamList {
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> shapes;
    void fill(torch::nn::Module &m) {
        names.clear();
        shapes.clear();
        for (auto &kv : m.named_parameters(true)) {
            names.push_back(kv.key());
            shapes.push_back(kv.value().sizes().vec());
        }
    }
    const char *get(int i, int *ndim, int64_t shape[4]) const {
        if (i < 0 || i >= (int)names.size()) return nullptr;
        int nd = (int)shapes[i].size();
        if (ndim) *ndim = nd;
        if (shape)
            for (int k = 0; k < 4; k++) shape[k] = k < nd ? shapes[i][k] : 0;
        return names[i].c_str();
    }
};

// A torch::nn::Linear layer applied as at::linear, which Python's F.linear
// calls: on a (B, T, C) input it folds the rows into one addmm with the
// bias, where torch::nn::Linear's forward (torch::nn::functional::linear)
// multiplies and then adds the bias in a second pass, and its backward
// reduces the bias's gradient in another (tools/bench_parity.py: 3-6 % of a
// ViT training step).
inline torch::Tensor sf_linear(const torch::nn::Linear &l, const torch::Tensor &x) {
    return torch::linear(x, l->weight, l->bias);
}

// Multi-head attention over (B, T, C) with an optional additive mask
// (broadcast to (B, H, T, T)).
torch::Tensor sf_vision_attention(const torch::Tensor &q, const torch::Tensor &k,
                                  const torch::Tensor &v, int64_t heads,
                                  const torch::Tensor &mask);

// Normal(0, sd) for matrices, zero biases, unit norms: the common init.
void sf_vision_init(torch::nn::Module &m, uint64_t seed, double sd);

// AdamW over m's parameters in two groups, weight decay `decay` on the
// matrices (dim >= 2) and none on biases, norms and scales, as CLIP's and
// timm's recipes do; `o` holds the rest (lr, betas, eps).
std::unique_ptr<torch::optim::AdamW> sf_vision_adamw(torch::nn::Module &m, const torch::optim::AdamWOptions &o,
                                                     double decay);

// Sets the learning rate of every group of opt (a schedule's step).
void sf_vision_set_lr(torch::optim::AdamW &opt, double lr);

// Checks that a float array holds finite values (bad input from a file or a
// peer must not turn into NaN losses silently).
bool sf_vision_finite(const float *p, size_t n);

#endif
