"""The core speaks no training: the store, the orchestrator and the CLI's generic commands never name the
training flow, its fields, tasks, metrics or error texts (the flow declares them in its registration)."""
import re
from pathlib import Path

from pipeline.training import job

ROOT = Path(__file__).resolve().parents[1] / "pipeline"
HISTORY = {ROOT / "store" / "migrations.py",  # the shipped migrations: the columns the schema once had, 0014 moving them
           ROOT / "store" / "migrations_postgres.py"}  # and the same in PostgreSQL's spelling
CORE = [*sorted(set((ROOT / "store").rglob("*.py")) - HISTORY), *sorted((ROOT / "orchestration").rglob("*.py")),
        *(ROOT / "cli" / name for name in ("runs.py", "listing.py", "render.py", "scheduling.py", "history.py"))]
NAMES = (*(f.name for f in job.FIELDS), *job.TASKS, *(m.key for m in job.METRICS), *job.ENTRY.spec_options)


def spoken(text: str) -> list[str]:
    """The training names and texts in a module's text (a name counts as a whole word)."""
    found = [name for name in NAMES if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
    return found + [s for s in (job.GATE_SENTENCE, job.FLOW_NAME) if s in text]


def test_the_core_modules_name_no_training_field_task_metric_error_text_or_flow():
    assert len(CORE) > 30 and NAMES
    speaking = {str(path.relative_to(ROOT)): spoken(path.read_text()) for path in CORE}
    assert {path: names for path, names in speaking.items() if names} == {}


def test_the_check_finds_a_name_as_a_word_and_not_inside_another():
    assert spoken('row["val_month"]; "The gate max_psi failed"') == ["val_month", "The gate "]
    assert spoken("settings.is_synthetic; read_data_url; fhv-duration-training-2") == ["fhv-duration-training"]


def test_the_orchestrator_and_the_store_name_no_flows_default_deployment():
    shipped = job.default_deployment()
    words = (shipped.name, shipped.description)
    core = [*sorted((ROOT / "orchestration").rglob("*.py")), *sorted((ROOT / "store").rglob("*.py"))]
    assert {str(path.relative_to(ROOT)): [w for w in words if w in path.read_text()] for path in core
            if any(w in path.read_text() for w in words)} == {}
