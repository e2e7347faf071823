"""The LLM strategy: a model reads the experiment and its history and edits the editable files.

Two backends. `api` (the default) talks to the Messages API through the `anthropic` SDK with our
own tools; `claude-code` runs the Claude Code CLI in the trial's work tree. Either way the model only
proposes: the orchestrator diffs the work tree, trains, and keeps or reverts by the metric.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig, LLMConfig, experiment_file
from skylab.strategy.base import Proposal, ProposalContext, Strategy
from skylab.strategy.llm_context import build_context, rules
from skylab.strategy.research import CATEGORIES, LESSON_CHARS, MEMORY_CHARS, consolidation_due
from skylab.strategy.workspace import READ_LINES, ToolError, Workspace

_PATH = {"path": {"type": "string", "description": "path relative to the experiment, e.g. train.py"}}
_WINDOW = {
    "offset": {
        "type": "integer",
        "description": "first line, from 1 (default 1); for a log, negative: from the end",
    },
    "limit": {"type": "integer", "description": f"how many lines (default {READ_LINES})"},
}
TOOLS: list[dict[str, Any]] = [
    {
        "name": "list_files",
        "description": "List the experiment's files and whether each is editable or frozen (read-only).",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "read_file",
        "description": (
            "Read lines of one file of the experiment, editable or frozen, numbered (the numbers are not "
            "part of the file). Long files come in windows: pass offset to read on."
        ),
        "input_schema": {"type": "object", "properties": {**_PATH, **_WINDOW}, "required": ["path"]},
    },
    {
        "name": "read_log",
        "description": (
            "Read lines of a past trial's training log, e.g. to see why it crashed or how its loss moved. "
            "A negative offset counts from the end (-50: the last 50 lines)."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "trial": {"type": "string", "description": "the trial's name in the history, e.g. t/12"},
                **_WINDOW,
            },
            "required": ["trial"],
        },
    },
    {
        "name": "replace_in_file",
        "description": "In an editable file, replace the one exact occurrence of old_string with new_string.",
        "input_schema": {
            "type": "object",
            "properties": {**_PATH, "old_string": {"type": "string"}, "new_string": {"type": "string"}},
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "write_file",
        "description": "Replace the whole content of an editable file.",
        "input_schema": {
            "type": "object",
            "properties": {**_PATH, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "finish",
        "description": "End this proposal once the files hold your change.",
        "input_schema": {
            "type": "object",
            "properties": {
                "description": {"type": "string", "description": "one line: what was changed"},
                "hypothesis": {"type": "string", "description": "one line: why it should help"},
                "category": {"type": "string", "enum": list(CATEGORIES), "description": "the kind of change"},
                "predicted_delta": {
                    "type": "number",
                    "description": "the change of the metric you expect (its sign says better or worse)",
                },
                "lesson": {
                    "type": "string",
                    "description": "one line: what the history so far has taught you",
                },
            },
            "required": ["description", "hypothesis", "category", "predicted_delta"],
        },
    },
]
MEMORY_TOOL: dict[str, Any] = {
    "name": "update_memory",
    "description": (
        f"Replace your research memory with a consolidation of it and the lessons since (at most "
        f"{MEMORY_CHARS} characters): what works, what does not, what to try next."
    ),
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
NUDGE = "Make your change with the tools (replace_in_file or write_file), then call finish."
CACHED = {"type": "ephemeral"}


def make_llm_strategy(config: ExperimentConfig) -> Strategy:
    if config.llm.agent == "claude-code":
        return ClaudeCodeStrategy(config)
    return ApiStrategy(config)


class _Originals:
    """The editable files as they were before the model touched them, to start a retry clean."""

    def __init__(self, root: Path, names: tuple[str, ...]) -> None:
        self.files = {name: (root / name).read_bytes() for name in names if (root / name).is_file()}
        self.root = root

    def restore(self) -> None:
        for name, data in self.files.items():
            experiment_file(self.root, name).write_bytes(data)


class ApiStrategy:
    name = "llm"

    def __init__(self, config: ExperimentConfig) -> None:
        import anthropic

        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            raise SkylabError("ANTHROPIC_API_KEY is not set: the llm strategy needs an Anthropic API key")
        self.config = config
        self.settings: LLMConfig = config.llm
        # The SDK reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL, and retries 429/5xx/timeouts itself.
        self.client = anthropic.Anthropic(max_retries=3, timeout=600.0)

    def propose(self, context: ProposalContext) -> Proposal | None:
        import anthropic

        originals = _Originals(context.workdir, self.config.editable_files)
        settings = self.settings
        for attempt in range(settings.retries + 1):
            try:
                return self._converse(context)
            except anthropic.AuthenticationError as exc:
                raise SkylabError(f"the Anthropic API rejected the key (HTTP 401): {_message(exc)}") from None
            except anthropic.PermissionDeniedError as exc:
                raise SkylabError(f"the Anthropic API refused access (HTTP 403): {_message(exc)}") from None
            except (anthropic.BadRequestError, anthropic.NotFoundError) as exc:
                raise SkylabError(f"the Anthropic API refused the request: {_message(exc)}") from None
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                originals.restore()
                if attempt == settings.retries:
                    tries = settings.retries + 1
                    raise SkylabError(
                        f"the Anthropic API kept failing after {tries} attempts: {_message(exc)}"
                    ) from None
                time.sleep(settings.retry_backoff_seconds * 2**attempt)
        return None

    def _converse(self, context: ProposalContext) -> Proposal:
        settings = self.settings
        workspace = Workspace(context.workdir, self.config, partial(_log_named, context))
        # The rules and the opening message do not change during a proposal: cached, each later turn
        # reads them at a tenth of the price (https://docs.anthropic.com prompt caching).
        system = [{"type": "text", "text": rules(context), "cache_control": CACHED}]
        opening = {
            "type": "text",
            "text": build_context(context, settings.context_chars),
            "cache_control": CACHED,
        }
        messages: list[dict[str, Any]] = [{"role": "user", "content": [opening]}]
        usage = {"tokens_in": 0, "tokens_out": 0, "tokens_cached": 0}
        tools = [*TOOLS, MEMORY_TOOL] if consolidation_due(context.history, context.tag) else TOOLS
        for _ in range(settings.max_turns):
            response = self.client.messages.create(
                model=settings.model,
                max_tokens=settings.max_tokens,
                system=system,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
                extra_body=self._extra_body(),
            )
            _count(usage, response.usage)
            messages.append({"role": "assistant", "content": [_block(b) for b in response.content]})
            results, finished = self._run_tools(workspace, response)
            if finished is not None:
                description = " ".join(str(finished.get("description", "")).split()) or "change by the model"
                hypothesis = " ".join(str(finished.get("hypothesis", "")).split())
                text = f"{description} — hypothesis: {hypothesis}" if hypothesis else description
                return Proposal(description=text, usage=usage, notes=_research_notes(finished, workspace))
            if usage["tokens_in"] + usage["tokens_out"] >= settings.max_proposal_tokens:
                why = f"the model used its {settings.max_proposal_tokens} tokens without calling finish"
                return Proposal(f"unfinished: {why}", usage=usage, abandoned=why)
            messages.append({"role": "user", "content": results or NUDGE})
        why = f"the model did not call finish in {settings.max_turns} turns"
        return Proposal(f"unfinished: {why}", usage=usage, abandoned=why)

    def _extra_body(self) -> dict[str, Any] | None:
        """What the SDK no longer takes as arguments but the API still reads."""
        extra: dict[str, Any] = {}
        if self.settings.temperature is not None:
            extra["temperature"] = self.settings.temperature
        if self.settings.thinking_budget:
            extra["thinking"] = {"type": "enabled", "budget_tokens": self.settings.thinking_budget}
        return extra or None

    def _run_tools(
        self, workspace: Workspace, response: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Run the response's tool calls: (the results to send back, the finish arguments when the
        proposal is done). A call cut off by max_tokens is not run; finish is refused while an edit
        of the same response failed, so the model always sees its errors before it ends."""
        uses = [block for block in response.content if block.type == "tool_use"]
        cut = response.stop_reason == "max_tokens"
        outputs: dict[str, tuple[str, bool]] = {}
        edit_failed, finishing = False, None
        for index, block in enumerate(uses):
            arguments = dict(block.input) if isinstance(block.input, dict) else {}
            try:
                if cut and index == len(uses) - 1:
                    raise ToolError(
                        f"your response was cut off at max_tokens ({self.settings.max_tokens}) while writing "
                        "this call, so it was not run: make the change in smaller replace_in_file steps"
                    )
                if block.name == "finish":
                    finishing = (block, arguments)
                    continue
                outputs[block.id] = (self._call(workspace, block.name, arguments), False)
            except ToolError as exc:
                outputs[block.id] = (str(exc), True)
                edit_failed = edit_failed or block.name in ("replace_in_file", "write_file")
        finished = None
        if finishing is not None:
            block, arguments = finishing
            try:
                if edit_failed:
                    raise ToolError(
                        "not finished: an edit in this response failed (see its error); fix it first"
                    )
                outputs[block.id] = (self._call(workspace, "finish", arguments), False)
                finished = arguments
            except ToolError as exc:
                outputs[block.id] = (str(exc), True)
        results: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": b.id,
                "content": outputs[b.id][0],
                "is_error": outputs[b.id][1],
            }
            for b in uses
        ]
        if cut and not uses:
            results.append({"type": "text", "text": f"Your response was cut off at max_tokens. {NUDGE}"})
        return results, finished

    @staticmethod
    def _call(workspace: Workspace, name: str, arguments: dict[str, Any]) -> str:
        if name == "list_files":
            return workspace.list_files()
        if name == "read_file":
            offset, limit = (
                _argument(arguments, "offset", int, 1),
                _argument(arguments, "limit", int, READ_LINES),
            )
            return workspace.read_file(_argument(arguments, "path", str), offset, limit)
        if name == "read_log":
            offset = _argument(arguments, "offset", int, 1)
            limit = _argument(arguments, "limit", int, READ_LINES)
            return workspace.read_log(_argument(arguments, "trial", str), offset, limit)
        if name == "replace_in_file":
            path, old = _argument(arguments, "path", str), _argument(arguments, "old_string", str)
            return workspace.replace_in_file(path, old, _argument(arguments, "new_string", str))
        if name == "write_file":
            return workspace.write_file(
                _argument(arguments, "path", str), _argument(arguments, "content", str)
            )
        if name == "update_memory":
            text = _argument(arguments, "text", str)
            if len(text) > MEMORY_CHARS:
                raise ToolError(f"the memory is {len(text)} characters; keep it within {MEMORY_CHARS}")
            workspace.memory = text
            return "Memory updated; it is shown in every later prompt."
        if name == "finish":
            _argument(arguments, "description", str)
            _argument(arguments, "predicted_delta", float, 0.0)
            return "Finished. The orchestrator will now train and judge the change."
        raise ToolError(f"unknown tool {name!r}")


def _research_notes(finished: dict[str, Any], workspace: Workspace) -> dict[str, str]:
    """The note fields a finished proposal adds: its category, predicted change, lesson, and the
    consolidated memory when the model wrote one (JSON: it may span lines)."""
    notes: dict[str, str] = {}
    category = str(finished.get("category", "other"))
    notes["category"] = category if category in CATEGORIES else "other"
    predicted = finished.get("predicted_delta")
    if isinstance(predicted, int | float) and not isinstance(predicted, bool) and math.isfinite(predicted):
        notes["predicted_delta"] = repr(float(predicted))
    lesson = " ".join(str(finished.get("lesson") or "").split())[:LESSON_CHARS]
    if lesson:
        notes["lesson"] = lesson
    if workspace.memory is not None:
        notes["memory"] = json.dumps(workspace.memory, ensure_ascii=False)
    return notes


def _argument(arguments: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    """One argument of a tool call, of the kind its schema says; a ToolError the model can read
    and correct for a missing or mistyped one (a model may send `content: null`)."""
    if key not in arguments or (arguments[key] is None and default is not ...):
        if default is ...:
            raise ToolError(f"missing argument {key!r}")
        return default
    value = arguments[key]
    kinds = (int, float) if kind is float else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool):
        wanted = {str: "a string", int: "an integer", float: "a number"}[kind]
        raise ToolError(f"argument {key!r} must be {wanted}, not {type(value).__name__}")
    return value


def _log_named(context: ProposalContext, name: str) -> str:
    trial = next((t for t in context.history.trials if t.name == name), None)
    return "" if trial is None else context.log_of(trial)


def _count(usage: dict[str, int], spent: Any) -> None:
    """Add one response's tokens: input counts cached and newly cached tokens too."""
    cached = int(getattr(spent, "cache_read_input_tokens", 0) or 0)
    written = int(getattr(spent, "cache_creation_input_tokens", 0) or 0)
    usage["tokens_in"] += int(spent.input_tokens) + cached + written
    usage["tokens_out"] += int(spent.output_tokens)
    usage["tokens_cached"] += cached


def _block(block: Any) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    dumped: dict[str, Any] = block.model_dump(exclude_none=True)
    return dumped


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc).splitlines()[0][:300]


CLAUDE_TOOLS = "Read,Edit,Write,Glob,Grep"
CLAUDE_DENIED = "Bash,WebFetch,WebSearch,NotebookEdit"


class ClaudeCodeStrategy:
    """Runs `claude -p` in the work tree with file tools only; the orchestrator diffs what it did."""

    name = "llm"

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.executable = shutil.which("claude")
        if self.executable is None:
            raise SkylabError(
                "the Claude Code CLI (`claude`) is not installed: "
                "`npm install -g @anthropic-ai/claude-code`, or use the default --agent api"
            )

    def command(self) -> list[str]:
        """The command line; the prompt goes on stdin (an argument over 128 KiB is refused by Linux)."""
        return [
            str(self.executable),
            "-p",
            "--output-format",
            "json",
            "--model",
            self.config.llm.model,
            "--max-turns",
            str(self.config.llm.max_turns),
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            CLAUDE_TOOLS,
            "--disallowedTools",
            CLAUDE_DENIED,
        ]

    def propose(self, context: ProposalContext) -> Proposal | None:
        prompt = (
            rules(context, finish_tool=False)
            + f"\n\nEdit only {', '.join(self.config.editable_files)} in the current directory. "
            "When done, end your answer with one line: "
            "`DESCRIPTION: <the change> — hypothesis: <why it should help>`.\n\n"
            + build_context(context, self.config.llm.context_chars)
        )
        try:
            result = subprocess.run(
                self.command(),
                cwd=context.workdir,
                capture_output=True,
                text=True,
                timeout=60 * 60,
                input=prompt,
            )
        except subprocess.TimeoutExpired:
            return Proposal(
                "unfinished: Claude Code ran for an hour", abandoned="Claude Code ran for an hour"
            )
        proposal = parse_claude_output(result.stdout)
        if result.returncode != 0 and not proposal.abandoned:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise SkylabError(f"the Claude Code CLI failed (exit {result.returncode}): {detail[0][:300]}")
        return proposal


def parse_claude_output(stdout: str) -> Proposal:
    """The description and token usage from `claude -p --output-format json`; an abandoned proposal
    when the CLI reports an error in its result (it reached --max-turns, or the API failed)."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        data = {"result": stdout}
    if not isinstance(data, dict):
        data = {"result": stdout}
    text = str(data.get("result", ""))
    description = next(
        (
            line.split(":", 1)[1].strip()
            for line in reversed(text.splitlines())
            if line.startswith("DESCRIPTION:")
        ),
        " ".join(text.split())[:200] or "change by Claude Code",
    )
    usage = data.get("usage") or {}
    tokens_in = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    spent = {"tokens_in": tokens_in, "tokens_out": int(usage.get("output_tokens") or 0)}
    subtype = str(data.get("subtype", ""))
    if data.get("is_error") or subtype.startswith("error"):
        why = (
            "Claude Code reached its --max-turns"
            if subtype == "error_max_turns"
            else "Claude Code reported an error"
        )
        detail = " ".join(text.split())[:200]
        why = f"{why}: {detail}" if detail else why
        return Proposal(f"unfinished: {why}", usage=spent, abandoned=why)
    return Proposal(description, usage=spent)
