"""The documentation: the MkDocs site builds strict (a broken link or anchor fails), its references
name every command, option and environment variable, and the README stays short and points at it."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.cli import build_parser, main
from pipeline.flows import load_flows
from pipeline.orchestration import registry
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from tests.conftest import FakeClock
from tests.fakes import InlineExecutor

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_LIMIT = 80  # lines: what it is, screenshots, the quick start, links into the docs
LINK = re.compile(r"\]\(([^)\s]+)\)")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2 is not our warning
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env, timeout=120)


def test_the_documentation_site_builds_strict(tmp_path):
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
    assert (tmp_path / "site" / "screenshots" / "overview.png").is_file()


def test_a_broken_link_or_anchor_fails_the_strict_build(tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "tests.md", "a") as page:
        page.write("\nSee [the options](cli.md#no-such-section) and [the old page](layout.md).\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "cli.md#no-such-section" in done.stderr and "layout.md" in done.stderr


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, its parser) for every command and action of ``python -m pipeline``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from commands(sub, (*path, name))


def test_the_cli_reference_names_every_command_and_option():
    reference = (DOCS / "cli.md").read_text()
    missing = []
    for path, parser in commands(build_parser()):
        if " ".join(path) not in reference:
            missing.append(" ".join(path))
        for action in parser._actions:
            missing += [f"{' '.join(path)} {o}" for o in action.option_strings
                        if o not in ("-h", "--help") and o not in reference]
    assert not missing, f"docs/cli.md does not name: {missing}"


def test_the_configuration_page_names_every_environment_variable():
    sources = [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("dashboard/**/*.py"), *ROOT.glob("tests/*.py"),
               *ROOT.glob("*.sh"), *ROOT.glob("scripts/*"), ROOT / ".ci" / "run"]
    names = {name for path in sources for name in re.findall(r"\bFHV_[A-Z][A-Z_]*", path.read_text())}
    page = (DOCS / "configuration.md").read_text()
    assert names and not sorted(n for n in names if f"`{n}`" not in page)


def test_the_readme_is_short_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LIMIT, "README.md grew: move the details into docs/"
    targets = [t for t in LINK.findall(readme) if "://" not in t]
    assert "docs/index.md" in targets and sum(t.startswith("docs/") and t.endswith(".md") for t in targets) >= 10
    broken = [t for t in targets if not (ROOT / t.partition("#")[0]).exists()]
    assert not broken, f"README.md links to missing files: {broken}"


def test_the_readme_quick_start_is_two_commands_and_the_test_command_is_what_ci_runs():
    quick_start = readme_section("Quick start")
    block = re.search(r"```bash\n(.*?)```", quick_start, re.S).group(1)
    commands_run = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands_run == ["./demo.sh", "./test.sh"]
    assert "./test.sh" in (ROOT / ".ci" / "run").read_text()


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(), re.S)


def test_the_adding_a_flow_page_runs_as_written(tmp_path, monkeypatch, settings, store):
    """The page's flow module, its entry and its deployment file, copied from the page, make a real run."""
    flow_code, entry_code, deployment_code = code_blocks("adding-a-flow.md", "python")[:3]
    package = tmp_path / "my_flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "echo.py").write_text(flow_code + "\n" + entry_code)
    (tmp_path / "my_deployments.py").write_text(deployment_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_FLOWS", dict(registry._FLOWS))
    monkeypatch.setenv("FHV_FLOWS", "my_flows.echo:ENTRY")
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    load_flows()
    assert main(["deployment", "create", str(tmp_path / "my_deployments.py")]) == 0
    assert main(["trigger", "--deployment", "echo-daily", "--date", "2026-12-01"]) == 0
    clock = FakeClock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))
    Scheduler(store, settings, options=SchedulerOptions(), clock=clock,
              executor=InlineExecutor(store, settings, clock=clock)).tick()
    run = store.runs(deployment="echo-daily", states=("COMPLETED", "FAILED"), limit=1)[0]
    assert (run["state"], run["word"], run["metrics"]) == ("COMPLETED", "hello", {"letters": 5})
    monkeypatch.delitem(sys.modules, "my_flows.echo")
    monkeypatch.delitem(sys.modules, "my_flows")


def test_every_deployment_file_the_guides_show_registers(tmp_path, monkeypatch, settings, capsys):
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    examples = [(page.name, block) for page in sorted(DOCS.glob("*.md")) if page.name != "adding-a-flow.md"
                for block in code_blocks(page.name, "python") if "DeploymentSpec(" in block]
    assert len(examples) >= 4
    for number, (page, block) in enumerate(examples):
        (tmp_path / f"example_{number}.py").write_text(block)
        assert main(["deployment", "create", str(tmp_path / f"example_{number}.py")]) == 0, \
            f"{page}: {capsys.readouterr().err}"
