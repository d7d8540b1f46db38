"""A study: its parts (``model``) together, checked by the one validation (``reader``), with
its TOML form (``to_table``, ``to_toml``) and edits (``replace``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import reader
from .model import (
    CLUSTER_PARTS,
    POLICIES,
    PROBLEMS,
    SCHEME_FIELDS,
    Delays,
    Figure,
    Linear,
    Logistic,
    Markov,
    Policy,
    Report,
    Run,
)


def _tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else x


def _policy_table(p: Policy) -> dict[str, Any]:
    table: dict[str, Any] = {"kind": p.kind}
    if p.label is not None:
        table["label"] = p.label
    for name, value in p.parameters().items():
        if value is not None:
            table[name] = list(value) if isinstance(value, tuple) else value
    for name in SCHEME_FIELDS:
        if getattr(p, name) is not None:
            table[name] = getattr(p, name)
    return table


def _delays_table(d: Delays) -> dict[str, Any]:
    table: dict[str, Any] = {"law": d.law}
    if d.label is not None:
        table["label"] = d.label
    table.update({k: list(v) if isinstance(v, tuple) else v for k, v in d.params.items()})
    slowdown = d.slowdown
    if isinstance(slowdown, tuple) and slowdown and all(s == slowdown[0] for s in slowdown):
        slowdown = slowdown[0]
    if slowdown != 1.0:
        table["slowdown"] = list(slowdown) if isinstance(slowdown, tuple) else slowdown
    for name in ("shift_per_row", "file", "sha256"):
        if getattr(d, name) is not None:
            table[name] = getattr(d, name)
    if d.markov is not None:
        table["markov"] = dataclasses.asdict(d.markov)
    for name in CLUSTER_PARTS:
        part = getattr(d, name)
        if part is not None:
            table[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in _without_none(part).items()}
    return table


def _without_none(obj) -> dict[str, Any]:
    return {
        f.name: list(v) if isinstance(v, tuple) else v
        for f in dataclasses.fields(obj)
        if (v := getattr(obj, f.name)) is not None
    }


@dataclasses.dataclass(frozen=True)
class Study:
    """A study: a problem, its clusters, the run options and the policies (see the module
    docstring). Constructing one checks it (``ConfigError`` naming the field, as for a file);
    ``resolved`` is the study with every default filled in (``config.json``)."""

    problem: Linear | Logistic
    delays: Delays | tuple[Delays, ...]
    run: Run
    policies: tuple[Policy, ...]
    name: str = "study"
    description: str = ""
    figure: Figure = dataclasses.field(default_factory=Figure)
    report: Report = dataclasses.field(default_factory=Report)
    quick: dict[str, Any] | None = None  # the file's [quick] table: what --quick changes in run
    resolved: dict[str, Any] = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        set_ = object.__setattr__  # normalizing a frozen instance's own fields, once
        if isinstance(self.delays, Delays):
            set_(self, "delays", (self.delays,))
        if isinstance(self.policies, Policy):
            set_(self, "policies", (self.policies,))
        set_(self, "delays", tuple(self.delays))
        set_(self, "policies", tuple(self.policies))
        set_(self, "resolved", reader.resolve_tables(self.to_table(), default_name=self.name))

    # ---- reading and writing

    @classmethod
    def from_toml(cls, path_or_name: str | Path, *, seeds: int | None = None, quick: bool = False) -> Study:
        """A study from a TOML file, or from the name of a study shipped with the package
        (``fastk-jax studies`` lists them). ``seeds`` overrides run.seeds; ``quick`` applies
        the file's [quick] table."""
        from . import library

        path = Path(path_or_name)
        if not path.suffix and not path.exists():
            path = library.find(str(path_or_name))
        return cls.from_table(reader.read_toml(path), seeds=seeds, quick=quick, default_name=path.stem)

    @classmethod
    def from_table(cls, raw: dict, *, seeds: int | None = None, quick: bool = False, default_name: str = "study") -> Study:
        """A study from parsed TOML tables (checked, every default filled in)."""
        return from_resolved(reader.resolve_tables(raw, seeds=seeds, quick=quick, default_name=default_name))

    def to_table(self) -> dict[str, Any]:
        """The study as TOML tables: ``reader.resolve_tables`` reads them back to this study."""
        table: dict[str, Any] = {"name": self.name}
        if self.description:
            table["description"] = self.description
        table["problem"] = {"kind": self.problem.kind, **_without_none(self.problem)}
        clusters = [_delays_table(d) for d in self.delays]
        table["delays"] = clusters[0] if len(clusters) == 1 else clusters
        run = _without_none(self.run)
        if isinstance(self.run.eta, tuple) and len(self.run.eta) == 1:
            run["eta"] = self.run.eta[0]
        table["run"] = run
        table["policy"] = [_policy_table(p) for p in self.policies]
        if self.figure != Figure():
            table["figure"] = _without_none(self.figure)
        if self.report != Report():
            table["report"] = _without_none(self.report)
        if self.quick is not None:
            table["quick"] = dict(self.quick)
        return table

    def to_toml(self) -> str:
        """The study as a TOML file (``Study.from_toml`` reads it back to this study)."""
        from .toml_writer import dumps

        return dumps(self.to_table())

    # ---- edits

    def replace(self, **fields) -> Study:
        """A copy with ``fields`` replaced, checked again. Besides the study's own fields, the
        names of the run's fields edit the run: ``study.replace(seeds=1000, eta=1e-3)``."""
        run_fields = {f.name for f in dataclasses.fields(Run)}
        run = {k: fields.pop(k) for k in list(fields) if k in run_fields}
        if run:
            fields["run"] = dataclasses.replace(fields.get("run", self.run), **run)
        return dataclasses.replace(self, **fields)

    def with_quick(self) -> Study:
        """The study as ``--quick`` runs it: the [quick] table's run fields applied."""
        table = self.to_table()
        return Study.from_table(table, quick=True, default_name=self.name)

    # ---- what it runs

    @property
    def n_workers(self) -> int:
        return self.problem.n_workers

    def _resolved_policy(self, policy: Policy) -> dict[str, Any]:
        return self.resolved["policies"][self.policies.index(policy)]

    def scheme_of(self, policy: Policy) -> dict[str, Any]:
        """The scheme settings ``policy`` runs with: its own where it sets them, else the run's
        (as resolved: Ringmaster's R = n unless stated)."""
        return {f: self._resolved_policy(policy)[f] for f in SCHEME_FIELDS}

    def label_of(self, policy: Policy) -> str:
        """``policy``'s label: its own, else its kind's, with the scheme settings it states
        (``reader``: its scheme, Ringmaster's R, a clipping limit)."""
        return self._resolved_policy(policy)["label"]


def from_resolved(d: dict[str, Any]) -> Study:
    """The typed study of a resolved one (``reader.resolve_tables``)."""
    problem = dict(d["problem"])
    kind = problem.pop("kind")
    for name in ("classes", "hidden"):
        if problem.get(name) is not None:
            problem[name] = tuple(problem[name])
    if "dataset" in problem and problem["dataset"] != "mnist":
        problem.pop("images", None), problem.pop("labels", None)
    clusters = tuple(_delays_from_resolved(t) for t in d["delays"])
    run_fields = {f.name for f in dataclasses.fields(Run)}
    run = {k: v for k, v in d["run"].items() if k in run_fields}
    run["eta"] = tuple(run["eta"])
    if run.get("metrics") is not None:
        run["metrics"] = tuple(run["metrics"])
    run = Run(**run)
    pols = tuple(_policy_from_resolved(p, run) for p in d["policies"])
    report = d["report"]
    return Study(
        problem=PROBLEMS[kind](**problem),
        delays=clusters,
        run=run,
        policies=pols,
        name=d["name"],
        description=d["description"],
        figure=Figure(**{k: tuple(v) if k == "metrics" else v for k, v in d["figure"].items()}),
        report=Report(tuple(report["levels"]), report.get("reference"), report.get("metric")),
        quick=d.get("quick"),
    )


def _delays_from_resolved(t: dict[str, Any]) -> Delays:
    from ..core import delays as laws

    slowdown = tuple(t["slowdown"])
    if all(s == slowdown[0] for s in slowdown):
        slowdown = slowdown[0]
    markov = Markov(**t["markov"]) if "markov" in t else None
    parts = {name: cls(**{k: _tuple(v) for k, v in t[name].items()}) for name, cls in CLUSTER_PARTS.items() if name in t}
    if "network" in parts and isinstance(parts["network"].bandwidth, tuple) and len(set(parts["network"].bandwidth)) == 1:
        parts["network"] = dataclasses.replace(parts["network"], bandwidth=parts["network"].bandwidth[0])
    if t["law"] == "trace":
        return Delays("trace", {}, t["label"], slowdown, None, markov, t["file"], t["sha256"], **parts)
    params = {k: _tuple(t[k]) for k in laws.parameter_names(t["law"])}
    return Delays(t["law"], params, t["label"], slowdown, t.get("shift_per_row"), markov, **parts)


def _policy_from_resolved(p: dict[str, Any], run: Run) -> Policy:
    cls = POLICIES[p["kind"]]
    own = {f.name for f in dataclasses.fields(cls)} - {f.name for f in dataclasses.fields(Policy)}
    fields = {k: _tuple(p[k]) for k in own if k in p}
    scheme = {f: p[f] for f in SCHEME_FIELDS if p[f] != getattr(run, f)}  # None: as in the run
    return cls(label=p["label"], **fields, **scheme)
