"""A plain Claude Managed Agents app: no OpenTelemetry and no cma_tracing in sight, only the `anthropic` SDK.

Run by tests/test_zero_code.py under `opentelemetry-instrument`. It creates a session, sends one user message, reads
the session's stream until the agent goes idle, and prints `DONE` (the marker the tests look for) on success.
Usage: python cma_turn_app.py BASE_URL  (or set CMA_APP_BASE_URL).
"""

import os
import sys

import anthropic


def main() -> None:
    base_url = sys.argv[1] if len(sys.argv) > 1 else os.environ["CMA_APP_BASE_URL"]
    client = anthropic.Anthropic(base_url=base_url, api_key="test-key", max_retries=0)
    session = client.beta.sessions.create(agent="agent_zero_code", environment_id="env_zero_code")
    client.beta.sessions.events.send(
        session.id,
        events=[{"type": "user.message", "content": [{"type": "text", "text": "What is 2+2?"}]}],
    )
    seen = []
    with client.beta.sessions.events.stream(session.id) as stream:
        for event in stream:
            seen.append(event.type)
            if event.type == "session.status_idle":
                break
    if not seen or seen[-1] != "session.status_idle":
        sys.exit(f"stream ended before session.status_idle: {seen}")
    print("DONE", session.id, len(seen), flush=True)


if __name__ == "__main__":
    main()
