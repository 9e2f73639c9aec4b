# ovd-distill — every user-facing command. `make help` lists them.
# Overrides: CONFIG="a.yaml [b.yaml …]" STORE=… RUNNER=… SET="key=value …" BEAM_ARGS="--opt=…" PYTHON=…

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements/*.txt setup.cfg 2>/dev/null | sha256sum | cut -c1-12)

DATA ?= data/shapes
TEACHERS ?= data/teachers
STORE ?= data/store
REPORT ?= runs/report
# DirectRunner = Beam's in-process runner, pinned (see beam_jobs/runners.py); PrismRunner and FlinkRunner are
# built / fetched into RUNNER_CACHE on first use; any other Beam runner name passes through with BEAM_ARGS.
RUNNER ?= DirectRunner
RUNNER_CACHE ?= $(HOME)/.cache/ovd-distill
FLINK_MASTER ?= [local]
PARALLELISM ?= 2
BEAM_ARGS ?=
METHOD ?= hdovd
RUN ?= runs/$(METHOD)
# The ShapesOV presets (configs/shapes/): METHOD picks the training file.
TRAIN_CONFIG ?= configs/shapes/$(METHOD).yaml
EXTRACT_CONFIG ?= configs/shapes/extract_features.yaml
PROPOSALS_CONFIG ?= configs/shapes/proposals.yaml
# The proposal network: trained with PROPOSER_CONFIG into PROPOSER_RUN when PROPOSER_RUN has no checkpoint.pt; `make
# proposals` runs PROPOSER_RUN/checkpoint.pt. HELDOUT: a held-out file of novel boxes for the stage's recall only.
PROPOSER_RUN ?= runs/proposer
PROPOSER_CONFIG ?= configs/shapes/proposer.yaml
# PROPOSER_SET="key=value …": overrides of the network's training (SET goes to the proposals job).
PROPOSER_SET ?=
HELDOUT ?=
LABELS_CONFIG ?= configs/shapes/pseudo_labels.yaml
# CONFIG: one or more config files, merged left to right (a preset, then variant overlays: configs/variants/).
CONFIG ?=
SET ?=
SET_FLAGS := $(foreach kv,$(SET),--set $(kv))
config_flags = $(foreach file,$(or $(CONFIG),$(1)),--config $(file))
# train / eval: the ShapesOV preset takes STORE and RUN; a preset given as CONFIG keeps its own store and out_dir
# unless STORE= or RUN= is given on the command line.
train_set = $(if $(or $(if $(CONFIG),,demo),$(filter-out file,$(origin $(2)))),--set $(1)=$($(2)))
TRAIN_SETS = $(call train_set,store,STORE) $(call train_set,out_dir,RUN)

# Models named by hub name go through the standard Hugging Face cache (HF_HOME): downloaded when online, read from
# the cache alone with HF_HUB_OFFLINE=1 in the environment. The Makefile sets neither; the tests go offline in
# tests/conftest.py.

# One Beam job on RUNNER: its flags come from beam_jobs.runners (which builds Prism or fetches the Flink jar the
# first time and stops here with the failing command if it cannot), then BEAM_ARGS.
RUNNER_FLAGS = $(PY) -m beam_jobs.runners flags $(RUNNER) --cache '$(RUNNER_CACHE)' --parallelism $(PARALLELISM) \
	--flink-master '$(FLINK_MASTER)'
run_beam_job = flags="$$($(RUNNER_FLAGS))" && mapfile -t flags <<< "$$flags" && set -x && \
	$(PY) -m $(1) "$${flags[@]}" $(BEAM_ARGS)

.DEFAULT_GOAL := help
.PHONY: help setup browser test test-fast demo demo-seeds sample teachers proposals extract-features pseudo-labels \
    prepare-runner train eval ablation bench \
    bench-gpu teacher-vlm compare-labelers inspect validate report clean-store

help: ## list every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-18s %s\n", $$1, $$2}'

setup: $(SETUP_STAMP) ## create .venv and install everything (torch pins first); quick when nothing changed

$(SETUP_STAMP): requirements/torch.txt requirements/main.txt requirements/constraints.txt setup.cfg
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/torch.txt
	$(PY) -m pip install --quiet -c requirements/constraints.txt -r requirements/main.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-* && touch $@

browser: ## install Debian's chromium (the report's browser test) when no Chromium is on PATH; apt-get, as root
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
		|| (apt-get update && apt-get install -y chromium)

test: setup browser ## run the whole test suite
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: setup ## the tests that start no server, runner, browser or process (-m "not slow"), over all cores
	$(PY) -m pytest -q -p no:cacheprovider -n auto -m "not slow" tests

# The demo's two Open-Det trainings (box names only; + HD-OVD's pseudo names) run side by side, one thread each, on
# HD-OVD's schedule, and are also scored under GenerateU's softmax mapping. Why these values: bench/PERFORMANCE.md,
# "Notes behind the shipped training configs".
OPENDET_DEMO_SETS ?= --set store=$(STORE) --set threads=1 --set 'opendet.inference.other_mappings=[softmax]'
OPENDET_RUN = $(PY) -m trainers.train --config configs/shapes/opendet.yaml $(OPENDET_DEMO_SETS) \
	--set out_dir=runs/demo/$(1) $(2) $(SET_FLAGS) > runs/demo/$(1).log 2>&1

demo: setup ## the whole chain on ShapesOV: sample, teachers, proposals, both Beam jobs, HD-OVD Table V, Open-Det
	$(MAKE) --no-print-directory sample teachers proposals extract-features pseudo-labels
	@mkdir -p runs/demo
	$(PY) -m trainers.proposer.recall --annotations $(DATA)/annotations/train_base.json \
		--novel-annotations $(DATA)/annotations/train_novel_heldout.json --split $(DATA)/ov_split.json \
		--store $(STORE) --proposals $(DATA)/proposals/train.json --json-out runs/demo/proposal_recall.json
	$(PY) -m featurestore inspect $(STORE)
	$(PY) -m featurestore validate $(STORE)
	$(PY) -m featurestore labels $(STORE) --top 10
	$(PY) -m trainers.hdovd.ablation --config configs/shapes/hdovd.yaml --rows base_only,image,hdovd --set store=$(STORE) \
		$(SET_FLAGS) --out runs/demo
	@echo "== Open-Det: box names only, and + pseudo names, side by side (logs: runs/demo/opendet.log, runs/demo/opendet_pseudo.log)"
	@$(call OPENDET_RUN,opendet,) & box=$$!; \
	$(call OPENDET_RUN,opendet_pseudo,--set opendet.loss.pseudo_names=true) & pseudo=$$!; \
	wait $$box; box_status=$$?; wait $$pseudo; pseudo_status=$$?; \
	grep -h -e "^done" -e "^evaluation" runs/demo/opendet.log runs/demo/opendet_pseudo.log; \
	if [ $$box_status -ne 0 ] || [ $$pseudo_status -ne 0 ]; then tail -n 20 runs/demo/opendet.log runs/demo/opendet_pseudo.log; exit 1; fi
	$(PY) -m trainers.demo_report --table5 runs/demo/table5.json --opendet runs/demo/opendet/metrics.json \
		--opendet runs/demo/opendet_pseudo/metrics.json --recall runs/demo/proposal_recall.json --out runs/demo/demo.md
	$(MAKE) --no-print-directory report

# The demo's rows over several seeds (seed and stream.seed set to each), each row's mean and range: runs/seeds/seeds.md.
SEEDS ?= 0,1,2

demo-seeds: setup ## the demo's HD-OVD and Open-Det rows over SEEDS (default 0,1,2): mean and range (runs/seeds)
	$(MAKE) --no-print-directory sample teachers proposals extract-features pseudo-labels
	$(PY) -m trainers.demo_seeds --seeds $(SEEDS) --store $(STORE) --out runs/seeds $(SET_FLAGS)

sample: setup ## write the ShapesOV sample to DATA (default data/shapes); deterministic, seconds
	@test -f $(DATA)/ov_split.json || $(PY) -m shapesov --out $(DATA)

teachers: setup ## the CLIP and ClipCap teachers in TEACHERS (committed copies verified, trained only if missing)
	$(PY) -m shapesov.teachers --data $(DATA) --out $(TEACHERS)

proposals: setup ## train the proposal network on base boxes once (PROPOSER_RUN), run it over every image -> proposals; AR (HELDOUT=novel GT)
	@test -f $(PROPOSER_RUN)/checkpoint.pt || (set -x && $(PY) -m trainers.train --config $(PROPOSER_CONFIG) \
		--set out_dir=$(PROPOSER_RUN) $(foreach kv,$(PROPOSER_SET),--set $(kv)))
	@$(call run_beam_job,beam_jobs.proposals $(call config_flags,$(PROPOSALS_CONFIG)) \
		--set proposer.checkpoint=$(PROPOSER_RUN)/checkpoint.pt \
		$(if $(HELDOUT),--set recall.novel_annotations=$(HELDOUT)) $(SET_FLAGS) --store $(STORE))

teacher-vlm: setup ## the instruction-following teacher of the vlm labeler in TEACHERS/vlm (kept if verified, else trained, minutes; RETRAIN=1)
	$(PY) -m shapesov.teachers.vlm_teacher --teachers $(TEACHERS) --config configs/shapes/teacher_vlm.yaml $(if $(RETRAIN),--retrain)

extract-features: setup ## Beam job: images + proposals -> crops -> CLIP -> images, regions, vocab (STORE, CONFIG, RUNNER)
	@$(call run_beam_job,beam_jobs.extract_features $(call config_flags,$(EXTRACT_CONFIG)) $(SET_FLAGS) --store $(STORE))

pseudo-labels: setup ## Beam job: pseudo boxes -> captions -> nouns -> CLIP pick -> pseudo_labels (STORE, CONFIG, RUNNER)
	@$(call run_beam_job,beam_jobs.pseudo_labels $(call config_flags,$(LABELS_CONFIG)) $(SET_FLAGS) --store $(STORE))

prepare-runner: setup ## build Prism (RUNNER=PrismRunner) or fetch the Flink jar (RUNNER=FlinkRunner) into RUNNER_CACHE
	$(PY) -m beam_jobs.runners prepare $(RUNNER) --cache '$(RUNNER_CACHE)'

train: setup ## stream the store and train (METHOD=hdovd or opendet; CONFIG="preset [variants]"), then evaluate
	$(PY) -m trainers.train $(call config_flags,$(TRAIN_CONFIG)) $(TRAIN_SETS) $(SET_FLAGS)

eval: setup ## evaluate RUN/checkpoint.pt (its weight average if kept): AP50 all/base/novel (OV-COCO) or AP_r/c/f (eval.protocol=lvis)
	$(PY) -m trainers.train $(call config_flags,$(TRAIN_CONFIG)) $(TRAIN_SETS) $(SET_FLAGS) --eval-only $(RUN)/checkpoint.pt

compare-labelers: setup ## ClipCap vs the vlm teacher (crop and box prompts) on the same pseudo boxes; table in docs/labelers.md
	$(MAKE) --no-print-directory sample teachers proposals teacher-vlm extract-features
	$(PY) -m bench.compare_labelers --store $(STORE) $(call config_flags,$(LABELS_CONFIG)) --teachers $(TEACHERS) $(SET_FLAGS)

bench: setup ## run the benchmarks in bench/; writes bench/results.json and bench/PERFORMANCE.md
	$(PY) -m bench.run_all

# bench-gpu: a hard time limit around the whole run (model builds included); the script stops its phases 5 s before
# it and writes what it measured to OUT. No `setup` prerequisite: it runs on a bare GPU machine from a copy of the
# checkout and of the virtual environment (VENV=path), with nothing to install.
BENCH_GPU_SECONDS ?= $(if $(SMOKE),60,280)
BENCH_GPU_OUT ?= $(or $(OUT),$(if $(SMOKE),build/bench-gpu-smoke,bench))
bench-gpu: ## the device benchmark (CUDA; SMOKE=1: tiny sizes on the CPU, under a minute); results in OUT (bench/)
	timeout --signal=TERM --kill-after=15 $(BENCH_GPU_SECONDS) $(PY) -m bench.gpu $(if $(SMOKE),--smoke) \
		--deadline $$(( $(BENCH_GPU_SECONDS) - 5 )) --out $(BENCH_GPU_OUT)

ablation: setup ## train and evaluate every row of HD-OVD Table V; table in runs/table5/table5.md
	$(PY) -m trainers.hdovd.ablation $(call config_flags,configs/shapes/hdovd.yaml) --set store=$(STORE) $(SET_FLAGS) \
		--out runs/table5

inspect: setup ## summarise the store: tables, shards, rows, bytes, schema, provenance (STORE=…)
	$(PY) -m featurestore inspect $(STORE)

validate: setup ## check the store's manifest against its files; exit 1 listing every problem (STORE=…)
	$(PY) -m featurestore validate $(STORE)

report: setup ## the store's static HTML report in REPORT (default runs/report); open REPORT/index.html from disk
	$(PY) -m featurestore report $(STORE) --out $(REPORT)

clean-store: ## delete the store at STORE
	rm -rf $(STORE)
