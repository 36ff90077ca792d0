"""The GenAI histograms of SPEC §5, with the semantic conventions' units and bucket advisories."""

from __future__ import annotations

from typing import Any, Final, Mapping, Optional

from opentelemetry.metrics import Histogram, Meter, NoOpMeter
from opentelemetry.util.types import AttributeValue

from . import attributes as A

#: 0.01 s … 81.92 s, doubling.
DURATION_BUCKETS: Final = [0.01 * 2**i for i in range(14)]
#: 1 … 67,108,864 tokens, ×4.
TOKEN_BUCKETS: Final = [4**i for i in range(14)]
#: A workflow run lasts seconds to hours (SPEC §5).
WORKFLOW_BUCKETS: Final = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200]


class Metrics:
    """Records turn, model request and tool measurements. Every method is called with telemetry errors caught."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._workflow_duration: Optional[Histogram] = None
        self.operation_duration: Histogram = meter.create_histogram(
            A.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of GenAI operations: agent turns, model requests and outcome evaluation cycles",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage: Histogram = meter.create_histogram(
            A.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Tokens used per model request and outcome evaluation cycle",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk: Histogram = meter.create_histogram(
            A.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time from a turn's start to the agent's first output",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tool_duration: Histogram = meter.create_histogram(
            A.METRIC_TOOL_DURATION,
            unit="s",
            description="Duration of tool calls",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    @property
    def workflow_duration(self) -> Histogram:
        """Made on a session's first workflow run: a process that never sees one has no such instrument."""
        histogram = self._workflow_duration
        if histogram is None:
            histogram = self._workflow_duration = self._meter.create_histogram(
                A.METRIC_WORKFLOW_DURATION,
                unit="s",
                description="Duration of workflow runs",
                explicit_bucket_boundaries_advisory=WORKFLOW_BUCKETS,
            )
        return histogram

    def workflow(self, seconds: float, attributes: Mapping[str, AttributeValue]) -> None:
        self.workflow_duration.record(seconds, attributes)

    def live(self) -> bool:
        """Whether records go anywhere now. The global meter, when the app set no meter provider (yet), is the API's
        proxy: it drops records until a provider is set, and then forwards them to that provider's meter."""
        real = getattr(self._meter, "_real_meter", self._meter)  # the proxy's backing meter; any other meter itself
        return real is not None and not isinstance(real, NoOpMeter)

    def turn(self, seconds: float, ttfc: Optional[float], attributes: Mapping[str, AttributeValue]) -> None:
        self.operation_duration.record(seconds, attributes)
        if ttfc is not None:
            self.time_to_first_chunk.record(ttfc, attributes)

    def model_request(
        self, seconds: float, input_tokens: int, output_tokens: int, attributes: MetricAttributes
    ) -> None:
        self.operation_duration.record(seconds, attributes.operation)
        self.token_usage.record(input_tokens, attributes.input)
        self.token_usage.record(output_tokens, attributes.output)

    def model_request_failed(
        self, seconds: float, input_tokens: int, output_tokens: int, attributes: Mapping[str, AttributeValue]
    ) -> None:
        self.model_request(
            seconds,
            input_tokens,
            output_tokens,
            MetricAttributes({**attributes, A.ERROR_TYPE: A.ERROR_TYPE_MODEL_REQUEST}),
        )

    def evaluation(self, seconds: float, input_tokens: int, output_tokens: int, attributes: MetricAttributes) -> None:
        """One outcome evaluation cycle: its duration and the grader's tokens."""
        self.model_request(seconds, input_tokens, output_tokens, attributes)

    def tool(self, seconds: float, attributes: Mapping[str, AttributeValue]) -> None:
        self.tool_duration.record(seconds, attributes)


class MetricAttributes:
    """A model request's three attribute sets, built once per agent rather than per request."""

    __slots__ = ("operation", "input", "output")

    def __init__(self, operation: Mapping[str, AttributeValue]) -> None:
        self.operation = dict(operation)
        self.input = {**operation, A.GEN_AI_TOKEN_TYPE: A.TOKEN_TYPE_INPUT}
        self.output = {**operation, A.GEN_AI_TOKEN_TYPE: A.TOKEN_TYPE_OUTPUT}


def metric_attributes(operation: str, start: Mapping[str, Any], **extra: AttributeValue) -> dict[str, AttributeValue]:
    """The low-cardinality attributes metrics carry: operation, provider, model, agent name (+ tool, error)."""
    attrs: dict[str, AttributeValue] = {A.GEN_AI_OPERATION_NAME: operation, A.GEN_AI_PROVIDER_NAME: A.PROVIDER}
    for key in (A.GEN_AI_REQUEST_MODEL, A.GEN_AI_AGENT_NAME):
        value = start.get(key)
        if isinstance(value, str) and value:
            attrs[key] = value
    attrs.update(extra)
    return attrs
