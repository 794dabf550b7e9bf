# shiftforge build.  Folders are discovered, not listed: a new module is a new
# .c file in its folder and a new unit test is tests/unit/test_<module>.c.
#
#   make            build everything (installs missing Debian packages first)
#   make test       unit + integration tests
#   make test-faults the 5-minute fault drill (tools/faults.py)
#   make demo       local cluster on the embedded world
#   make bench      benchmarks (not tests)
#   make lint       the layout's include and link rules (make test runs them too)
#   make NO_TORCH=1 coordinator, sfctl and a worker with the non-model kinds
#   make SANITIZE=address,undefined test
#   make SANITIZE=thread NO_TORCH=1 test   (ThreadSanitizer: build/san-thread)

CC       ?= cc
CXX      ?= g++
OPT      ?= -O2
SANITIZE ?=
NO_TORCH ?=
LIBTORCH ?=

comma := ,
BUILD := build
ifneq ($(SANITIZE),)
# One tree per sanitizer set: ASan and TSan objects cannot be mixed.
BUILD := build/san$(if $(filter address$(comma)undefined,$(SANITIZE)),,-$(subst $(comma),-,$(SANITIZE)))
endif
ifneq ($(NO_TORCH),)
BUILD := $(BUILD)/notorch
endif

CPPFLAGS := -I. -I$(BUILD) -D_GNU_SOURCE -MMD -MP
CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-missing-field-initializers -fPIC
CXXFLAGS := -std=gnu++17 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fPIC
LDFLAGS  :=

ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
CXXFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

# libtorch: Debian's libtorch-dev by default, or another tree (CUDA nodes).
ifeq ($(NO_TORCH),)
ifneq ($(LIBTORCH),)
CUDA_HOME  ?= /usr/local/cuda
# CUDA's runtime headers, when the node has them, turn on the shim's CUDA
# parts (freeing the caching allocator's memory between model swaps).
TORCH_INC  := -isystem $(LIBTORCH)/include -isystem $(LIBTORCH)/include/torch/csrc/api/include \
              $(if $(wildcard $(CUDA_HOME)/include/cuda_runtime_api.h),-isystem $(CUDA_HOME)/include)
TORCH_LIBS := -L$(LIBTORCH)/lib -Wl,-rpath,$(LIBTORCH)/lib -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 \
              $(if $(wildcard $(LIBTORCH)/lib/libtorch_cuda.so),-ltorch_cuda -lc10_cuda) -Wl,--as-needed
else
TORCH_INC  := -isystem /usr/include/torch/csrc/api/include
TORCH_LIBS := -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed
endif
CPPFLAGS += -DSF_HAVE_TORCH=1
endif

PROTO_SRC := $(wildcard proto/*.proto)
PROTO_C   := $(patsubst proto/%.proto,$(BUILD)/proto/%.pb-c.c,$(PROTO_SRC))
PROTO_H   := $(PROTO_C:.c=.h)
DATA_C    := $(BUILD)/gen/sf_data.c

# common/ is one folder per concern, each its own archive with its own link
# dependencies (docs/architecture.md has the map and what may include what):
#   runtime  errors, log, config, files, clocks, hashes, metrics, histograms
#   net      the wire protocol, ZeroMQ glue, CURVE, ZAP, chunked blobs
#   redis    the key schema, auth, the libuv adapter, the connection
#   text     tokenizers (GPT-2 BPE, CLIP BPE) and SFT rows
#   formats  safetensors
#   image    PNG, JPEG, ImageFolder trees
#   method   class lists, the reward, run specs, job contract, statistics
COMMON_LIBS := runtime net redis text formats image method
LDLIBS_runtime := -lcjson -lm -lpthread
LDLIBS_net     := -lzmq -luv -lprotobuf-c
LDLIBS_redis   := -lhiredis -luv
LDLIBS_text    :=
LDLIBS_formats :=
LDLIBS_image   := -lpng -ljpeg
LDLIBS_method  := -lcjson -lm
LDLIBS_world   := -lm
LDLIBS_ml      :=
# ml/spm.cpp is a shared object of its own, libsfspm.so, that the ml
# library loads at run time (ml/spm_shim.cpp says why); its tokenizer trainer
# (sf_spm_train_llama) is in libsentencepiece_train, of the same package.
LDLIBS_spm     := -lsentencepiece_train -lsentencepiece

WORLD_SRC  := $(wildcard world/*.c)
ML_SRC     := $(if $(NO_TORCH),,$(filter-out ml/spm.cpp,$(wildcard ml/*.cpp)))
SPM_SO     := $(if $(NO_TORCH),,$(BUILD)/lib/libsfspm.so)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(patsubst %.cpp,$(BUILD)/obj/%.o,$(1)))

# The generated protocol belongs to net, the embedded class lists to method.
OBJ_runtime := $(call obj,$(wildcard common/runtime/*.c))
OBJ_net     := $(call obj,$(wildcard common/net/*.c)) $(patsubst $(BUILD)/proto/%.c,$(BUILD)/obj/proto/%.o,$(PROTO_C))
OBJ_redis   := $(call obj,$(wildcard common/redis/*.c))
OBJ_text    := $(call obj,$(wildcard common/text/*.c))
OBJ_formats := $(call obj,$(wildcard common/formats/*.c))
OBJ_image   := $(call obj,$(wildcard common/image/*.c))
OBJ_method  := $(call obj,$(wildcard common/method/*.c)) $(BUILD)/obj/gen/sf_data.o
OBJ_world   := $(call obj,$(WORLD_SRC))
OBJ_ml      := $(call obj,$(ML_SRC))
COMMON_SRC  := $(wildcard $(addsuffix /*.c,$(addprefix common/,$(COMMON_LIBS))))

lib = $(BUILD)/lib/libsf$(1).a
# Link order: a library before the ones it uses.
ALL_LIBS := $(if $(NO_TORCH),,ml) world method image formats text redis net runtime

PROGS := sf-coordinator sf-worker sfctl sf-world $(if $(NO_TORCH),,$(if $(wildcard learner/*.c),sf-learner) \
         $(if $(wildcard trainer/*.c),sf-train))
PROG_DIR_sf-coordinator := coordinator
PROG_DIR_sf-worker      := worker
PROG_DIR_sf-learner     := learner
PROG_DIR_sfctl          := cli
PROG_DIR_sf-train       := trainer
PROG_DIR_sf-world       := cli/world
BINS := $(addprefix $(BUILD)/bin/,$(PROGS))

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_SRC   := $(if $(NO_TORCH),$(filter-out tests/unit/test_ml_%,$(UNIT_SRC)),$(UNIT_SRC))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
BENCH_SRC  := $(wildcard tests/bench/bench_*.c)
BENCH_SRC  := $(if $(NO_TORCH),$(filter-out tests/bench/bench_ml_%,$(BENCH_SRC)),$(BENCH_SRC))
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
ITOOL_SRC  := $(wildcard tests/integration/*.c)
ITOOL_BINS := $(patsubst tests/integration/%.c,$(BUILD)/itest/%,$(ITOOL_SRC))

.PHONY: all deps build test test-faults unit integration demo bench clean models models-train fuzz fuzz-build results lint
.DEFAULT_GOAL := all

# The targets that build first do it on every core unless make was given -j.
BUILD_JOBS := $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc 2>/dev/null || echo 2))

all: deps
	@$(MAKE) $(BUILD_JOBS) --no-print-directory build

deps:
	@tools/deps.sh

build: $(BINS) $(UNIT_BINS) $(BENCH_BINS) $(ITOOL_BINS) $(SPM_SO)
	@ln -sfn $(CURDIR)/$(BUILD)/bin $(CURDIR)/build/current

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)
	protoc-c --c_out=$(BUILD) $<

$(DATA_C): $(wildcard data/*.tsv) tools/embed.sh
	@mkdir -p $(dir $@)
	tools/embed.sh $@ $(wildcard data/*.tsv)

# Every object waits for the generated headers, so that a fresh tree builds in
# one pass.
$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cpp | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(TORCH_INC) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj/proto/%.o: $(BUILD)/proto/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# The SentencePiece tokenizers' implementation (ml/spm.cpp), loaded by the
# ml library from ../lib beside the program's folder.
$(BUILD)/lib/libsfspm.so: $(BUILD)/obj/ml/spm.o $(BUILD)/lib/libsfruntime.a
	@mkdir -p $(dir $@)
	$(CXX) -shared $(LDFLAGS) -Wl,--no-undefined -o $@ $^ $(LDLIBS_spm) $(LDLIBS_runtime)

.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/lib/libsf%.a: $$(OBJ_$$*)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# What each program links, in link order (a library before those it uses).
# The coordinator and sfctl never link libtorch, libpng or libjpeg (make lint
# checks it on the binaries).
USES_sf-coordinator := method redis net runtime
USES_sfctl          := method formats redis net runtime
USES_sf-world       := world image method runtime
USES_sf-worker      := ml world image formats text method net runtime
USES_sf-learner     := ml world formats text method redis net runtime
USES_sf-train       := ml world image formats text method runtime
# Tests and benchmarks link every library (those named test_ml_* or
# bench_ml_* with libtorch); integration tools what the protocol needs.
uses_for    = $(if $(USES_$(1)),$(USES_$(1)),$(if $(call needs_torch,$(1)),$(ALL_LIBS),$(filter-out ml,$(ALL_LIBS))))
needs_torch = $(if $(NO_TORCH),,$(filter sf-worker sf-learner sf-train test_ml_% bench_ml_%,$(1)))
libs_for    = $(foreach l,$(filter-out $(if $(NO_TORCH),ml),$(call uses_for,$(1))),$(call lib,$(l)))
link_for    = $(if $(call needs_torch,$(1)),$(CXX),$(CC))
ldlibs_for  = $(sort $(foreach l,$(call uses_for,$(1)),$(LDLIBS_$(l)))) $(if $(call needs_torch,$(1)),$(TORCH_LIBS))

$(BUILD)/bin/%: $$(call obj,$$(wildcard $$(PROG_DIR_$$*)/*.c)) $$(call libs_for,$$*)
	@mkdir -p $(dir $@)
	$(call link_for,$*) $(LDFLAGS) -o $@ $(filter %.o,$^) $(call libs_for,$*) $(call ldlibs_for,$*)

# Objects a unit test links besides the libraries: the coordinator's tests
# link its modules (not main.c) and a harness that stands in for store.c
# (tests/unit/coord_harness.h).
COORD_TEST_OBJ := $(call obj,coordinator/runs.c coordinator/shift.c coordinator/broker.c coordinator/clients.c \
                  tests/unit/coord_harness.c)
UNIT_EXTRA_test_coord_runs   := $(COORD_TEST_OBJ)
UNIT_EXTRA_test_coord_broker := $(COORD_TEST_OBJ)
# The worker's job queue and the learner's rollout rules, apart from their
# daemons' sockets (worker/jobq.h, learner/batch.h).
UNIT_EXTRA_test_worker_jobs   := $(call obj,worker/jobq.c)
UNIT_EXTRA_test_learner_batch := $(call obj,learner/batch.c)
# sfctl's terminal escaping (cli/ builds no library).
UNIT_EXTRA_test_term := $(call obj,cli/term.c)
# The tokenizer test loads libsfspm.so (not linked: only a prerequisite).
UNIT_EXTRA_test_ml_spm := $(SPM_SO)
UNIT_EXTRA_test_ml_diffusion_if := $(SPM_SO)
UNIT_EXTRA_test_ml_llama_train := $(SPM_SO)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $$(UNIT_EXTRA_$$*) $$(call libs_for,$$*)
	@mkdir -p $(dir $@)
	$(call link_for,$*) $(LDFLAGS) -o $@ $(filter %.o,$^) $(call libs_for,$*) $(call ldlibs_for,$*)

# The fake worker speaks to the learner with the worker's own client.
ITOOL_USES := method formats net runtime
ITOOL_EXTRA_sf_fake_worker := $(BUILD)/obj/worker/learner_client.o
$(BUILD)/itest/%: $(BUILD)/obj/tests/integration/%.o $$(ITOOL_EXTRA_$$*) $(foreach l,$(ITOOL_USES),$(call lib,$(l)))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(foreach l,$(ITOOL_USES),$(call lib,$(l))) $(sort $(foreach l,$(ITOOL_USES),$(LDLIBS_$(l))))

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $$(call libs_for,$$*)
	@mkdir -p $(dir $@)
	$(call link_for,$*) $(LDFLAGS) -o $@ $< $(call libs_for,$*) $(call ldlibs_for,$*)
# The T5 bench's tokeniser loads libsfspm.so (not linked: only a prerequisite).
$(BUILD)/bench/bench_ml_t5: $(SPM_SO)

test: deps
	@$(MAKE) $(BUILD_JOBS) --no-print-directory build
	@SF_BUILD=$(BUILD) tests/run.sh

# The layout's rules (docs/architecture.md): includes by folder, and the
# coordinator and sfctl free of libtorch, libpng and libjpeg.
lint: build
	@tools/lint_layout.sh $(BUILD)/bin

unit: build
	@SF_BUILD=$(BUILD) tests/run.sh unit

integration: build
	@SF_BUILD=$(BUILD) tests/run.sh integration

# The fault drill: 5 minutes of SIGKILL and SIGSTOP of random workers, the
# learner, the coordinator and Redis under load, then every accepted job must
# be done exactly once (tools/faults.py; make test runs a 60-second version,
# tests/integration/test_faults.sh).
test-faults: build
	@tools/faults.py --seconds 300 --seed 1 --bin $(BUILD)/bin

demo: deps models
	@$(MAKE) $(BUILD_JOBS) --no-print-directory $(BINS)
	@SF_BUILD=$(BUILD) tools/demo.sh

results: deps models
	@$(MAKE) $(BUILD_JOBS) --no-print-directory build
	@SF_BUILD=$(BUILD) tools/results.sh

bench: deps models
	@$(MAKE) $(BUILD_JOBS) --no-print-directory build
	@SF_BUILD=$(BUILD) tools/bench.sh

# The embedded world's trained models (CLIP, classifiers, policy) ship in
# models/ with models/MANIFEST.json (sha256, sizes, settings, the command,
# the quality figures).  `make models` checks them (seconds) and writes
# models/quality.json; a second run changes nothing.
models:
	@tools/models.py check models

# Retrains them from scratch, deterministically, into build/models-train
# (MODELS_SCALE multiplies every step count; 1 is the shipped settings), then
# says whether the result matches the shipped manifest bit for bit or by how
# much it differs.  tools/models.py manifest + copying the files into models/
# ships a retraining (docs/models.md).
MODELS_SCALE ?= 1
MODELS_TRAIN := $(BUILD)/models-train
models-train: deps
	@$(MAKE) $(BUILD_JOBS) --no-print-directory build
	@rm -rf $(MODELS_TRAIN) && mkdir -p $(MODELS_TRAIN)
	@t0=$$(date +%s); $(BUILD)/bin/sf-train all --out $(MODELS_TRAIN) --scale $(MODELS_SCALE) && \
	  tools/models.py manifest $(MODELS_TRAIN) --scale $(MODELS_SCALE) \
	    --train-s $$(( $$(date +%s) - t0 )) --command "$(BUILD)/bin/sf-train all --out DIR --scale $(MODELS_SCALE)"
	@tools/models.py compare models $(MODELS_TRAIN)

# Fuzzing (libFuzzer, clang): every decoder of outside input, one target per
# tests/fuzz/fuzz_<name>.c, built with ASan and UBSan into build/fuzz.
#   make fuzz               each target for FUZZ_SECONDS (600) from its seed corpus
#   make fuzz-build         only build (tests/integration/test_fuzz.sh runs them briefly)
FUZZ_SECONDS ?= 600
FUZZ_CC      ?= clang
FUZZ_FLAGS   := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_LIBSRC  := $(COMMON_SRC) $(WORLD_SRC) $(PROTO_C) $(DATA_C)
FUZZ_OBJ     := $(patsubst %.c,build/fuzz/obj/%.o,$(patsubst $(BUILD)/%,%,$(FUZZ_LIBSRC)))
# Sources a target links besides those: fuzz_spec and fuzz_result run the coordinator's
# planner (its harness defines what runs.c needs of store.c and broker.c).
FUZZ_EXTRA_fuzz_spec := coordinator/runs.c coordinator/shift.c
FUZZ_EXTRA_fuzz_result := coordinator/runs.c coordinator/shift.c
FUZZ_EXTRA_fuzz_handlers := coordinator/runs.c coordinator/shift.c coordinator/broker.c coordinator/clients.c \
                            tests/unit/coord_harness.c
fuzz_extra    = $(patsubst %.c,build/fuzz/obj/%.o,$(FUZZ_EXTRA_$(1)))

build/fuzz/obj/%.o: %.c | $(PROTO_H) $(DATA_C)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -I. -I$(BUILD) -D_GNU_SOURCE -std=gnu11 -MMD -MP $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/obj/%.o: $(BUILD)/%.c | $(PROTO_H) $(DATA_C)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -I. -I$(BUILD) -D_GNU_SOURCE -std=gnu11 -MMD -MP $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ) $$(call fuzz_extra,fuzz_$$*)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -I. -I$(BUILD) -D_GNU_SOURCE -std=gnu11 $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJ) \
		$(call fuzz_extra,fuzz_$*) -o $@ $(sort $(foreach l,world $(COMMON_LIBS),$(LDLIBS_$(l))))

fuzz-build: deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@SF_ROOT=$(CURDIR) tools/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
# The fuzz objects follow their headers too: a struct that changes in a
# header must not leave objects of its old layout behind (a wild jump).
-include $(shell find build/fuzz/obj -name '*.d' 2>/dev/null)
