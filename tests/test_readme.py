"""The documentation points at things that exist: every relative link of README.md and docs/*.md names an
existing file, every repository path the README names in backticks (or runs as ``python X.py``,
``python -m a.b``, ``bash X.sh``) exists, and the README stays a page a newcomer reads (<= 250 lines)."""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250

# Run outputs the README names (all git-ignored, checked below): they exist only after a run.
GENERATED = ("datasets/result/", "datasets/data/", "datasets/data128p/", "snapshots/", "log/", "results/")
# Folder names inside a dataset or a result folder (``low/``+``high/``, ``ori/``), and a dataset split the
# user passes (``LOL/eval15``): paths relative to the user's data, not to the repository.
DATA_RELATIVE = ("LOL/", "low/", "high/", "Low/", "Normal/", "ori/", "mem/")
SOURCE_SUFFIXES = (".py", ".sh", ".md", ".ini")  # a bare name with these names a file at the repository root

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
COMMAND = re.compile(r"\b(?:python|bash)\s+(?:-m\s+([A-Za-z_][\w.]*)|([\w./-]+\.(?:py|sh))\b)")


def relative_links(text: str) -> list[str]:
    """The file part of every relative Markdown link or image of ``text`` (code blocks and spans skipped;
    URLs with a scheme and same-page anchors are not files)."""
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    targets = [t for t in LINK.findall(prose) if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", t)]
    return [t.split("#", 1)[0] for t in targets if not t.startswith("#")]


def _is_repo_path(token: str) -> bool:
    if re.search(r"\s|[<>{}\[\]()$~]", token) or token.startswith(("-", "/", "..", ".")):
        return False  # a flag, a command, a placeholder, or a place outside the repository
    if token.startswith(GENERATED + DATA_RELATIVE):
        return False
    return "/" in token or token.endswith(SOURCE_SUFFIXES)


def named_paths(text: str) -> list[str]:
    """Repository paths ``text`` names: backticked paths outside code blocks, and the scripts and modules
    its commands run (``python -m a.b`` -> ``a/b``), inside code blocks too."""
    paths = [t for t in INLINE_CODE.findall(FENCE.sub("", text)) if _is_repo_path(t)]
    for module, script in COMMAND.findall(text):
        paths.append(module.replace(".", "/") if module else script)
    return list(dict.fromkeys(paths))


def missing_paths(paths: list[str], root: Path) -> list[str]:
    """Those of ``paths`` with no file under ``root``: a glob must match something; ``a/b`` from
    ``python -m a.b`` may be ``a/b.py`` or the package ``a/b/``."""
    def exists(p: str) -> bool:
        if "*" in p:
            return any(root.glob(p.rstrip("/")))
        return (root / p).exists() or (root / f"{p}.py").is_file()
    return [p for p in paths if not exists(p)]


# --- the extractors on made-up text -------------------------------------------------------------

def test_relative_links_takes_files_and_skips_urls_anchors_and_code():
    text = ("See [a](docs/a.md#part), ![pic](docs/pic.jpg) and [b](../README.md).\n"
            "Not files: [web](https://example.org/x.md), [mail](mailto:x@y.z), [here](#local).\n"
            "```\n[in a block](docs/block.md)\n```\nInline: `[span](docs/span.md)`.\n")
    assert relative_links(text) == ["docs/a.md", "docs/pic.jpg", "../README.md"]


def test_named_paths_keeps_repository_paths_and_skips_outputs_flags_and_placeholders():
    text = ("Weights `checkpoints/LLE_model.pth`, code `lowlight_model.py`, scripts `*_script.sh`; a run writes\n"
            "`snapshots/scl/Epoch800.pth` and `results/x/result.txt`, reads `low/`+`high/` and `LOL/eval15`;\n"
            "not paths: `--weights FILE`, `LLE_model.pth`, `$TORCH_HOME/hub/`, `~/.cache/`, `../shared/`,\n"
            "`<save_dir>/<env>/`, `enhance()`.\n"
            "```bash\npython -m tools.export --out `x/y.py`\n.venv/bin/python benchmarks/quality.py\n"
            "bash test_script.sh\n```\n")
    assert named_paths(text) == ["checkpoints/LLE_model.pth", "lowlight_model.py", "*_script.sh",
                                 "tools/export", "benchmarks/quality.py", "test_script.sh"]


def test_missing_paths_reports_what_is_absent(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    (tmp_path / "run_script.sh").write_text("")
    paths = ["pkg/mod.py", "pkg/mod", "pkg/", "*_script.sh", "pkg/gone.py", "*_nothing.sh", "pkg/other"]
    assert missing_paths(paths, tmp_path) == ["pkg/gone.py", "*_nothing.sh", "pkg/other"]


# --- the documentation itself ---------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file(page):
    links = relative_links(page.read_text())
    assert [t for t in links if not (page.parent / t).exists()] == []


def test_pages_link_to_each_other():
    """Guards the extractor against silently finding nothing: the README links every page of docs/."""
    linked = {(README.parent / t).resolve() for t in relative_links(README.read_text())}
    assert {p.resolve() for p in PAGES[1:]} <= linked and (ROOT / "docs" / "demo_grid.jpg").resolve() in linked


def test_every_repository_path_the_readme_names_exists():
    paths = named_paths(README.read_text())
    assert {"checkpoints/LLE_model.pth", "benchmarks/quality.py", "train_enhancer_script.sh"} <= set(paths)
    assert missing_paths(paths, ROOT) == []


def test_generated_prefixes_are_run_outputs():
    """The prefixes the path check skips are git-ignored: a shipped file cannot hide behind them."""
    ignored = [line.strip().lstrip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    for prefix in GENERATED:
        assert any(fnmatch.fnmatch(prefix, pattern) for pattern in ignored if pattern.endswith("/")), prefix


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= MAX_README_LINES
