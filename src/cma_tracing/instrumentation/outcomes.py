"""An outcome the agent works towards (SPEC §3.4): one turn, one `evaluation outcome` span per grader cycle, and a
`gen_ai.evaluation.result` event per verdict.

A turn holds an `Outcome` only when a `user.define_outcome` opened it, so a plain turn pays nothing for any of this.
The lifecycle needs just two facts of it (an outcome is open, a terminal verdict came), kept even for a turn nobody
records; spans, usage, metrics and events are kept only for a recorded one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Optional

from opentelemetry.trace import Span, SpanKind, set_span_in_context
from opentelemetry.util.types import AttributeValue

from . import attributes as A
from .content import cut, tool_value
from .fields import as_int, fields_of, get, get_str

if TYPE_CHECKING:
    from .telemetry import Telemetry
    from .turn import Turn

#: Evaluation cycles whose end has not been seen yet, kept per outcome.
MAX_OPEN_EVALUATIONS: Final = 16


class _Evaluation:
    __slots__ = ("span", "start_ns", "iteration", "heartbeats")

    def __init__(self, span: Optional[Span], start_ns: int, iteration: int) -> None:
        self.span = span
        self.start_ns = start_ns
        self.iteration = iteration
        self.heartbeats = 0


class Outcome:
    """What a turn knows of its outcome: its id and limit, the cycles seen, the last verdict."""

    __slots__ = (
        "outcome_id",
        "max_iterations",
        "iterations",
        "result",
        "terminal",
        "interrupted",
        "steerable",
        "_open",
    )

    def __init__(self, event: Any, steerable: bool = True) -> None:
        self.outcome_id: Optional[str] = get_str(event, "outcome_id")
        limit = get(event, "max_iterations")
        self.max_iterations = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        self.iterations = 0
        self.result: Optional[str] = None
        self.terminal = False  # a verdict after which the outcome takes no more steering
        self.interrupted = False  # a user.interrupt came before any verdict
        # Opened by its user.define_outcome: a user.message joins it until a terminal verdict. An outcome a turn only
        # learns from the grader's events (it attached mid-outcome) records its cycles but changes no lifecycle.
        self.steerable = steerable
        self._open: dict[str, _Evaluation] = {}

    def start_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {
            A.OUTCOME_MAX_ITERATIONS: self.max_iterations
            if self.max_iterations is not None
            else A.DEFAULT_MAX_ITERATIONS
        }
        if self.outcome_id:
            attrs[A.OUTCOME_ID] = self.outcome_id
        return attrs

    def learn_id(self, turn: Turn, event: Any) -> None:
        """The echo names the outcome: its id goes on the turn (a send's request could not know it)."""
        if self.outcome_id is None:
            self.outcome_id = get_str(event, "outcome_id")
            if self.outcome_id:
                turn.span.set_attribute(A.OUTCOME_ID, self.outcome_id)

    def verdict(self, event: Any) -> None:
        """The lifecycle's part of a verdict: whether steering still joins the outcome."""
        result = get_str(event, "result")
        if result is not None:
            self.result = result
            self.terminal = result in A.TERMINAL_VERDICTS

    # -- recorded turns ------------------------------------------------------------------------------------------

    def evaluation_started(
        self, telemetry: Telemetry, turn: Turn, event: Any, event_id: Optional[str], now_ns: int
    ) -> None:
        if event_id is None or event_id in self._open or len(self._open) >= MAX_OPEN_EVALUATIONS:
            return
        iteration = as_int(get(event, "iteration"))
        span = None
        if turn.children is not None:
            attrs: dict[str, AttributeValue] = {
                A.GEN_AI_OPERATION_NAME: A.OP_EVALUATION,
                A.GEN_AI_PROVIDER_NAME: A.PROVIDER,
                A.GEN_AI_EVALUATION_NAME: A.EVALUATION_NAME_OUTCOME,
                A.OUTCOME_ITERATION: iteration,
            }
            outcome_id = get_str(event, "outcome_id") or self.outcome_id
            if outcome_id:
                attrs[A.OUTCOME_ID] = outcome_id
            span = telemetry.tracer.start_span(
                A.SPAN_EVALUATION_OUTCOME,
                context=set_span_in_context(turn.span),
                kind=SpanKind.INTERNAL,
                attributes=attrs,
                start_time=now_ns,
            )
        self._open[event_id] = _Evaluation(span, now_ns, iteration)

    def heartbeat(self, event: Any) -> None:
        for evaluation in self._open.values():
            if evaluation.iteration == as_int(get(event, "iteration")):
                evaluation.heartbeats += 1
                return

    def evaluation_ended(self, telemetry: Telemetry, turn: Turn, event: Any, now_ns: int) -> None:
        """A verdict: its cycle's span ends with the grader's usage (counted in the turn's totals), and the verdict
        is an event on the turn span and/or a log record."""
        self.verdict(event)
        self.iterations += 1
        start_id = get(event, "outcome_evaluation_start_id")
        evaluation = self._open.pop(start_id, None) if isinstance(start_id, str) else None
        iteration = as_int(get(event, "iteration")) if evaluation is None else evaluation.iteration
        usage = get(event, "usage")
        tokens = (0, 0, 0, 0)
        if usage is not None:
            counts = fields_of(usage)
            read = as_int(counts.get("cache_read_input_tokens"))
            write = as_int(counts.get("cache_creation_input_tokens"))
            tokens = (
                as_int(counts.get("input_tokens")) + read + write,
                as_int(counts.get("output_tokens")),
                read,
                write,
            )
            turn.input_tokens += tokens[0]
            turn.output_tokens += tokens[1]
            turn.cache_read_tokens += read
            turn.cache_write_tokens += write
        label = get_str(event, "result")
        if evaluation is not None and evaluation.span is not None:
            span = evaluation.span
            attrs: dict[str, AttributeValue] = {
                A.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
                A.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
                A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: tokens[2],
                A.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: tokens[3],
                A.OUTCOME_HEARTBEATS: evaluation.heartbeats,
            }
            if label:
                attrs[A.GEN_AI_EVALUATION_SCORE_LABEL] = label
            span.set_attributes(attrs)
            span.end(end_time=now_ns)
        if telemetry.metrics is not None and evaluation is not None and evaluation.span is not None:
            telemetry.metrics.evaluation(
                (now_ns - evaluation.start_ns) / 1e9, tokens[0], tokens[1], turn.templates.evaluation_metric_attributes
            )
        result: dict[str, AttributeValue] = {
            A.GEN_AI_EVALUATION_NAME: A.EVALUATION_NAME_OUTCOME,
            A.OUTCOME_ITERATION: iteration,
        }
        if label:
            result[A.GEN_AI_EVALUATION_SCORE_LABEL] = label
        outcome_id = get_str(event, "outcome_id") or self.outcome_id
        if outcome_id:
            result[A.OUTCOME_ID] = outcome_id
        policy = telemetry.content
        if policy.enabled:
            explanation = get_str(event, "explanation")
            scrubbed = policy.scrub(explanation) if explanation else None
            if isinstance(scrubbed, str):
                result[A.GEN_AI_EVALUATION_EXPLANATION] = cut(scrubbed, policy.max_bytes)[0]
        if telemetry.evaluation_events_on_span:
            turn.span.add_event(A.EVENT_EVALUATION_RESULT, result, now_ns)
        if telemetry.evaluation_events_as_logs:
            telemetry.emit_event(A.EVENT_EVALUATION_RESULT, turn.span, result, now_ns)

    def interrupt(self) -> None:
        if self.result is None:
            self.interrupted = True

    def end(self, end_ns: int) -> dict[str, AttributeValue]:
        """At the turn's end: cycles still open end with it, marked incomplete; returns the turn's end attributes."""
        for evaluation in self._open.values():
            if evaluation.span is not None:
                evaluation.span.set_attribute(A.SPAN_INCOMPLETE, True)
                evaluation.span.end(end_time=max(end_ns, evaluation.start_ns))
        self._open.clear()
        attrs: dict[str, AttributeValue] = {A.OUTCOME_ITERATIONS: self.iterations}
        result = self.result if self.result is not None else (A.VERDICT_INTERRUPTED if self.interrupted else None)
        if result is not None:
            attrs[A.OUTCOME_RESULT] = result
        return attrs


def outcome_content(turn: Turn, event: Any) -> None:
    """With content on: the outcome's description is the turn's user input, its rubric `anthropic.outcome.rubric`."""
    content = turn.content
    if content is None:
        return
    description = get_str(event, "description")
    if description:
        content.add_input_parts([{"type": "text", "content": description}])
    rubric = get(event, "rubric")
    if rubric is not None:
        text = get_str(rubric, "content") or get_str(rubric, "file_id")
        encoded = tool_value(content.policy, text if text is not None else rubric)
        if encoded is not None:
            content.extra[A.OUTCOME_RUBRIC] = encoded[0]
            if encoded[1]:
                content.truncated = True
