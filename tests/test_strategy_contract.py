"""One contract every registered strategy passes (as every runner passes test_runner_contract):
only the editable files change, None exactly when exhausted, the same proposals from the same
seed and the same answers, and trials in flight on other workers respected.

Each strategy is driven by what it really talks to: the sweep by its [sweep] table, the llm by
the real anthropic SDK against a local Messages API server. A strategy in STRATEGIES without a
driver here fails `test_every_registered_strategy_is_in_the_suite`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from skylab.experiment.config import load_config
from skylab.store.gitstore import TrialStore
from skylab.strategy import STRATEGIES, PendingTrial, Proposal, ProposalContext, Strategy, make_strategy
from tests.conftest import git
from tests.factory import add_trial
from tests.fake_anthropic import FakeMessagesAPI, text, tool, turn
from tests.loop_experiment import make_loop_experiment


class Driver(Protocol):
    """How the suite makes a strategy do each thing the contract is about."""

    def experiment(self, directory: Path, seed: int = 7) -> Path: ...

    def next_proposal_tries_to_edit_frozen_files(self) -> None: ...

    def exhaust(self, store: TrialStore) -> bool: ...  # False: this strategy is never exhausted

    def pending_for(self, context: ProposalContext) -> tuple[PendingTrial, ...]: ...

    def respected(self, proposal: Proposal, pending: tuple[PendingTrial, ...]) -> bool: ...


class SweepDriver:
    """A two-point grid (X in 0, 3) for exhaustion; a seeded random sweep for the rest."""

    def experiment(self, directory: Path, seed: int = 7) -> Path:
        parameters = "X = [0, 1, 2, 3, 4, 5]\nY = [-1, 0, 1]"
        exp = make_loop_experiment(directory, mode="random", parameters=parameters)
        toml = exp / "experiment.toml"
        toml.write_text(toml.read_text().replace("seed = 7", f"seed = {seed}"))
        git("commit", "-qam", "seed", "--allow-empty", cwd=exp)
        git("update-ref", "refs/skylab/baseline", "HEAD", cwd=exp)
        return exp

    def next_proposal_tries_to_edit_frozen_files(self) -> None:
        """A sweep only ever rewrites its file's constants: nothing to try."""

    def exhaust(self, store: TrialStore) -> bool:
        for x in range(6):
            for y in (-1, 0, 1):
                add_trial(store, "t", float(x + y + 10), params={"X": x, "Y": y})
        return True

    def pending_for(self, context: ProposalContext) -> tuple[PendingTrial, ...]:
        points = [(x, y) for x in range(6) for y in (-1, 0)]  # all but Y = 1: in flight elsewhere
        return tuple(
            PendingTrial(f"t/{n}", f"X={x} Y={y}", {"X": x, "Y": y}) for n, (x, y) in enumerate(points, 1)
        )

    def respected(self, proposal: Proposal, pending: tuple[PendingTrial, ...]) -> bool:
        return all(proposal.params != trial.params for trial in pending) and proposal.params["Y"] == 1


@dataclass
class LLMDriver:
    """The real client against a local Messages API server that answers from a script."""

    api: FakeMessagesAPI

    def experiment(self, directory: Path, seed: int = 7) -> Path:
        exp = make_loop_experiment(directory)
        with open(exp / "experiment.toml", "a") as handle:
            handle.write('\n[llm]\nmodel = "claude-test"\nretries = 0\nmax_turns = 8\n')
        git("commit", "-qam", "llm settings", cwd=exp)
        git("update-ref", "refs/skylab/baseline", "HEAD", cwd=exp)
        self.api.script = self.edit("\nX = 0\n", "\nX = 3\n", "move X to 3")
        return exp

    @staticmethod
    def edit(old: str, new: str, description: str) -> list[dict[str, Any]]:
        return [
            turn(text("Let me look."), tool("read_file", path="train.py")),
            turn(tool("replace_in_file", path="train.py", old_string=old, new_string=new)),
            turn(tool("finish", description=description, hypothesis="closer to the optimum")),
        ]

    def next_proposal_tries_to_edit_frozen_files(self) -> None:
        self.api.script = [
            turn(tool("write_file", path="prepare.py", content="# hacked\n")),
            turn(tool("write_file", path="experiment.toml", content="[experiment]\n")),
            turn(tool("write_file", path="../outside.py", content="escaped\n")),
            *self.edit("\nX = 0\n", "\nX = 3\n", "move X to 3"),
        ]

    def exhaust(self, store: TrialStore) -> bool:
        return False  # a model always has another idea: the llm proposes until the run's budget ends

    def pending_for(self, context: ProposalContext) -> tuple[PendingTrial, ...]:
        return (PendingTrial("t/7", "raise the learning rate to 0.04"),)

    def respected(self, proposal: Proposal, pending: tuple[PendingTrial, ...]) -> bool:
        opening = self.api.requests[-1]["messages"][0]["content"][0]["text"]
        return all(f"- {trial.name}: {trial.description}" in opening for trial in pending)


DRIVERS = {"sweep": SweepDriver, "llm": LLMDriver}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    server = FakeMessagesAPI()
    with server.running():
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server


@pytest.fixture(params=list(STRATEGIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver(name: str, api: FakeMessagesAPI) -> Driver:
    made: Driver = LLMDriver(api) if DRIVERS[name] is LLMDriver else SweepDriver()
    return made


def context_of(exp: Path, pending: tuple[PendingTrial, ...] = ()) -> ProposalContext:
    store = TrialStore.open(exp)
    tip = store.start_point()
    return ProposalContext(load_config(exp), store.load(), "t", tip, None, exp, pending=pending)


def changed_paths(exp: Path) -> set[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=exp, capture_output=True, text=True
    )
    return {line[3:] for line in out.stdout.splitlines()}


def test_every_registered_strategy_is_in_the_suite() -> None:
    assert set(DRIVERS) == set(STRATEGIES)


def test_only_the_editable_files_change(name: str, driver: Driver, tmp_path: Path) -> None:
    exp = driver.experiment(tmp_path / "q")
    driver.next_proposal_tries_to_edit_frozen_files()
    strategy = make_strategy(name, load_config(exp))
    proposal = strategy.propose(context_of(exp))
    assert proposal is not None and not proposal.abandoned
    changed = changed_paths(exp)
    assert changed and changed <= set(load_config(exp).editable_files)
    assert not (tmp_path / "outside.py").exists()


def test_none_exactly_when_exhausted(name: str, driver: Driver, tmp_path: Path) -> None:
    exp = driver.experiment(tmp_path / "q")
    assert make_strategy(name, load_config(exp)).propose(context_of(exp)) is not None  # something left
    git("checkout", "--", ".", cwd=exp)
    if driver.exhaust(TrialStore.open(exp)):
        assert make_strategy(name, load_config(exp)).propose(context_of(exp)) is None
        assert changed_paths(exp) == set()  # and nothing touched


def test_the_same_seed_and_answers_give_the_same_proposals(
    name: str, driver: Driver, api: FakeMessagesAPI, tmp_path: Path
) -> None:
    def proposals(directory: Path, seed: int) -> list[tuple[str, str]]:
        exp = driver.experiment(directory, seed)
        strategy: Strategy = make_strategy(name, load_config(exp))
        made = []
        for _ in range(3):
            api.script = LLMDriver.edit("\nX = 0\n", "\nX = 3\n", "move X to 3")  # the llm's answers
            proposal = strategy.propose(context_of(exp))
            assert proposal is not None
            made.append((proposal.description, (exp / "train.py").read_text()))
            git("checkout", "--", ".", cwd=exp)
        return made

    first = proposals(tmp_path / "a", 7)
    sent = [request["messages"][0] for request in api.requests]  # what the llm was told
    api.requests.clear()
    assert proposals(tmp_path / "b", 7) == first
    assert [request["messages"][0] for request in api.requests] == sent
    if isinstance(driver, SweepDriver):
        assert proposals(tmp_path / "c", 8) != first  # the seed is what it depends on


def test_trials_in_flight_on_other_workers_are_respected(name: str, driver: Driver, tmp_path: Path) -> None:
    exp = driver.experiment(tmp_path / "q")
    pending = driver.pending_for(context_of(exp))
    proposal = make_strategy(name, load_config(exp)).propose(context_of(exp, pending))
    assert proposal is not None
    assert driver.respected(proposal, pending)
