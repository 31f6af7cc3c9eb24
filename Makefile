# xdplb build. `make` builds the BPF objects and the TypeScript; `make test` and `make demo`
# install whatever a fresh Debian 12 machine lacks first (scripts/deps.sh is a no-op when all is there).

BUILD     ?= build/bpf
CLANG     ?= clang
BPFTOOL   ?= bpftool
ARCH_INC  := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -g -O2 -target bpf -Wall -Werror -I$(ARCH_INC) -Ibpf
BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SRCS))
BPF_HDRS  := $(wildcard bpf/*.h bpf/lib/*.h)
TS_SRCS   := $(shell find src -name '*.ts' 2>/dev/null)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.PHONY: all deps build bpf ts test demo demo-down bench clean distclean

all: build

deps:
	$(Q)bash scripts/deps.sh

build: bpf ts

bpf: $(BPF_OBJS)

$(BUILD):
	$(Q)mkdir -p $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) | $(BUILD)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

ts: dist/.stamp

dist/.stamp: $(TS_SRCS) tsconfig.json package.json
	$(call msg,TSC,dist/)
	$(Q)npx tsc -p tsconfig.json
	$(Q)touch $@

# The test command of the README: installs what is missing, builds, runs every suite.
test: deps build
	$(Q)bash scripts/test.sh

# The demo command of the README. `make demo DEMO_ARGS=--keep` leaves the lab up.
demo: deps build
	$(Q)bash scripts/demo.sh $(DEMO_ARGS)

demo-down:
	$(Q)node dist/cli/main.js lab down

bench: deps build
	$(Q)if [ -f dist/bench/main.js ]; then node dist/bench/main.js; \
	else echo "bench: not written yet (issue 10); nothing measured" >&2; exit 1; fi

clean:
	$(Q)rm -rf build dist .tap

distclean: clean
	$(Q)rm -rf node_modules
