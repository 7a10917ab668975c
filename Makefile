# Set-up is these targets: each creates .venv when missing and installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test system-packages clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# espeak-ng (speech for the synthetic corpus) and ffmpeg (video IO; the pip package imageio-ffmpeg
# also carries a binary) come from the system's package manager, and so do Chromium and its
# ChromeDriver, the browser tests/test_app.py drives (without them that one test is skipped).
REQUIRED_PACKAGES := espeak-ng:espeak-ng ffmpeg:ffmpeg
BROWSER_PACKAGES  := chromium:chromium chromium-driver:chromedriver
system-packages:
	@missing=""; browser=""; \
	for pc in $(REQUIRED_PACKAGES); do command -v $${pc#*:} >/dev/null 2>&1 || missing="$$missing $${pc%%:*}"; done; \
	for pc in $(BROWSER_PACKAGES); do command -v $${pc#*:} >/dev/null 2>&1 || browser="$$browser $${pc%%:*}"; done; \
	[ -z "$$missing$$browser" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq || true; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  fi; \
	  if [ -n "$$browser" ]; then \
	    echo "installing$$browser with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$browser >/dev/null \
	      || echo "note: could not install$$browser: the browser test of the web page will be skipped" >&2; \
	  fi; \
	elif [ -n "$$missing" ]; then \
	  echo "missing system packages:$$missing; install them with: sudo apt-get install -y$$missing$$browser" >&2; exit 1; \
	else \
	  echo "note: no$$browser: the browser test of the web page will be skipped (sudo apt-get install -y$$browser)" >&2; \
	fi

# The main job, on data it makes itself: a small synthetic corpus, small Style-E, Style-A and StyleTalk
# models trained on it, and infer.py on held-out inputs -> outputs/demo/demo.mp4 + sheet.png (and
# demo_clip.mp4, the emotion from a style clip).
demo: $(STAMP) system-packages
	$(PY) scripts/demo.py

# The suite in TEST_WORKERS processes, a test file to a process (its module fixtures built once);
# each process computes with cores / TEST_WORKERS threads (tests/conftest.py).
TEST_WORKERS ?= 2
test: $(STAMP) system-packages
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache
