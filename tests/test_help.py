"""``--help`` of every entry point: exit 0, every option's default shown (or it is a switch, required, or
says its default in words), options grouped under titled groups, no word broken across lines."""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import inspect
import io
import sys

import pytest

from utils.help import describe, shows_default

# module, arguments before --help
ENTRY_POINTS = [
    ("train", ["--stage", "scl"]), ("train", ["--stage", "enhancer"]), ("train", ["--stage", "memory"]),
    ("lowlight_test", []), ("datasets.prepare_demo", []), ("datasets.sice", []), ("datasets.make_lowlight", []),
    ("benchmarks.bench_enhancer", []), ("benchmarks.bench_export", []), ("benchmarks.bench_inference", []),
    ("benchmarks.bench_training", []), ("benchmarks.quality", []), ("tools.export", []),
    ("tools.make_readme_figure", []), ("tools.random_backbone_weights", []),
]
GROUPED_ABOVE = 6  # a parser with more options than this puts every one of them in a titled group


def _run_help(module: str, args: list[str], monkeypatch) -> tuple[str, argparse.ArgumentParser]:
    """``main`` of ``module`` with ``args + ["--help"]``, in this process: its output and the parser."""
    monkeypatch.setenv("COLUMNS", "100")
    made: list[argparse.ArgumentParser] = []
    real = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def record(self, *a, **k):
        made.append(self)
        return real[1](self, *a, **k)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", record)
    mod = importlib.import_module(module)
    argv = [*args, "--help"]
    monkeypatch.setattr(sys, "argv", [module, *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        mod.main(argv) if inspect.signature(mod.main).parameters else mod.main()
    assert exit_.value.code in (0, None), module
    return out.getvalue(), made[-1]


@pytest.mark.parametrize("module,args", ENTRY_POINTS, ids=[" ".join([m, *a]) for m, a in ENTRY_POINTS])
def test_help(module, args, monkeypatch):
    text, parser = _run_help(module, args, monkeypatch)
    options = [(flag, title, action) for flag, title, action in describe(parser) if flag not in ("-h", "--help")]
    assert options
    # every option shows its default, says it in words, or needs none (a switch, a required flag)
    for flag, _, action in options:
        if action.help is argparse.SUPPRESS:
            continue
        switch = action.nargs == 0
        said = "default" in (action.help or "").lower()
        assert shows_default(action) or switch or action.required or said, f"{module}: {flag} shows no default"
        if action.default is None and not (switch or action.required):
            assert said, f"{module}: {flag} defaults to None; its help must say what happens"
    assert "default: None" not in text and "(default: SUPPRESS" not in text and "==SUPPRESS==" not in text
    # grouped under titled groups, one per concern, when there are many
    if len(options) > GROUPED_ABOVE:
        loose = [flag for flag, title, _ in options if title in ("options", "optional arguments")]
        assert not loose, f"{module}: {loose} in no group"
    # no word broken across lines: every word of every option's help (and the description's) is whole in the output
    words = set(text.split())
    formatter = parser._get_formatter()
    for flag, _, action in options:
        if action.help is not argparse.SUPPRESS and (action.help or shows_default(action)):
            helped = copy.copy(action)
            helped.help = helped.help or ""
            broken = [w for w in formatter._expand_help(helped).split() if w not in words]
            assert not broken, f"{module}: {flag}: {broken} broken across lines"
