"""The AgentDojo environment service: AgentDojo's suites over `arlas.v1.Environment`.

    envs/agentdojo/setup.sh                       # once: the venv and the gRPC stubs
    envs/agentdojo/.venv/bin/python envs/agentdojo/server.py --listen 127.0.0.1:50060

`arlas env agentdojo --listen ADDR` starts it the same way; `--env agentdojo` on eval,
train, actor starts a local one. With `--token-file F` (or ARLAS_TOKEN) every rpc must carry
`authorization: Bearer <token>`. `--health-listen ADDR` serves `GET /healthz`.
On start it prints one line `listening on HOST:PORT` to stdout (the port chosen when 0).
"""

from __future__ import annotations

import argparse
import hmac
import json
import http.server
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from arlas.v1 import environment_pb2 as pb  # noqa: E402
from arlas.v1 import environment_pb2_grpc as rpc  # noqa: E402

import bridge  # noqa: E402

# Bounds: batches held at once (the oldest idle one is dropped first), their idle lifetime,
# episodes per batch, and the longest message accepted.
MAX_BATCHES = 256
IDLE_SECONDS = 900.0
MAX_EPISODES = 1024
MAX_MESSAGE_BYTES = 8 << 20
MAX_TURNS = 64


class Batch:
    def __init__(self, episodes: list[bridge.Episode]):
        self.episodes = episodes
        self.lock = threading.Lock()
        self.used = time.monotonic()


def state(ep: bridge.Episode) -> pb.EpisodeState:
    s = pb.EpisodeState(
        agent_system_prompt=ep.agent_system_prompt(),
        attacker_system_prompt=ep.attacker_system_prompt(),
        attacker_message=ep.attacker_message(),
        agent_message=ep.agent_message(),
        goal_sentence=ep.goal_sentence(),
        injection_slot=ep.injection_slot(),
        done=ep.done,
        turn=ep.turn,
        format_errors=ep.format_errors,
        attacker_format_errors=ep.attacker_format_errors,
        answered=ep.answered,
    )
    if ep.injection is not None:
        s.injection = ep.injection
    if ep.utility is not None:
        s.utility = ep.utility
    if ep.security is not None:
        s.security = ep.security
    s.scripted.update(ep.scripted())
    if ep.done and ep.record:
        s.record = json.dumps(ep.results_json(pipeline="arlas", attack=ep.attack_name))
    return s


class Service(rpc.EnvironmentServicer):
    def __init__(self):
        self.batches: OrderedDict[str, Batch] = OrderedDict()
        self.lock = threading.Lock()
        self.tasks = bridge.tasks()
        self.known = {(suite, task) for suite, _, task in self.tasks}

    # --- batches ---

    def _store(self, batch: Batch) -> str:
        now = time.monotonic()
        with self.lock:
            for key in [k for k, b in self.batches.items() if now - b.used > IDLE_SECONDS]:
                del self.batches[key]
            while len(self.batches) >= MAX_BATCHES:
                self.batches.popitem(last=False)
            key = secrets.token_hex(16)
            self.batches[key] = batch
            return key

    def _batch(self, key: str, context) -> Batch:
        with self.lock:
            batch = self.batches.get(key)
            if batch is not None:
                self.batches.move_to_end(key)
                batch.used = time.monotonic()
        if batch is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no batch {key[:40]!r}: it was closed or expired; reset again")
        return batch

    def _reply(self, key: str, batch: Batch) -> pb.EpisodeBatch:
        return pb.EpisodeBatch(batch=key, episodes=[state(ep) for ep in batch.episodes])

    @staticmethod
    def _index(batch: Batch, index: int, context) -> bridge.Episode:
        if index >= len(batch.episodes):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"episode index {index} is outside the batch of {len(batch.episodes)}",
            )
        return batch.episodes[index]

    # --- rpcs ---

    def Describe(self, request, context):
        return pb.DescribeResponse(
            name=bridge.NAME,
            version=bridge.version(),
            tasks=[pb.EnvironmentTask(suite=s, split=sp, task=t) for s, sp, t in self.tasks],
            scripted_agents=list(bridge.SCRIPTED_AGENTS),
            attacks=list(bridge.ATTACKS),
        )

    def Reset(self, request, context):
        if not 1 <= len(request.episodes) <= MAX_EPISODES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a batch has 1 to {MAX_EPISODES} episodes")
        if not 1 <= request.max_turns <= MAX_TURNS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"max_turns must be 1 to {MAX_TURNS}")
        episodes = []
        for e in request.episodes:
            if (e.suite, e.task) not in self.known:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown task {e.suite}/{e.task}"[:300])
            episode = bridge.Episode(e.suite, e.task, e.seed, request.max_turns)
            episode.record = request.record
            episodes.append(episode)
        batch = Batch(episodes)
        return self._reply(self._store(batch), batch)

    def Inject(self, request, context):
        batch = self._batch(request.batch, context)
        with batch.lock:
            targets = [(self._index(batch, i.index, context), i) for i in request.injections]
            for ep, _ in targets:
                if not ep.injection_slot():
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "an episode's injection slot is not open")
            for ep, item in targets:
                ep.inject(item.text if item.HasField("text") else None)
            return self._reply(request.batch, batch)

    def Step(self, request, context):
        batch = self._batch(request.batch, context)
        with batch.lock:
            targets = [(self._index(batch, a.index, context), a) for a in request.actions]
            for ep, _ in targets:
                if ep.done:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "an episode in the request is over")
            for ep, action in targets:
                ep.step(action.text if action.HasField("text") else "")
            return self._reply(request.batch, batch)

    def RenderAttack(self, request, context):
        batch = self._batch(request.batch, context)
        with batch.lock:
            try:
                texts = [self._index(batch, i, context).render_attack(request.attack) for i in request.indices]
            except bridge.BadRequest as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            return pb.RenderAttackResponse(texts=texts)

    def Close(self, request, context):
        with self.lock:
            self.batches.pop(request.batch, None)
        return pb.CloseResponse()


class RequireToken(grpc.ServerInterceptor):
    def __init__(self, token: str):
        self.expected = f"Bearer {token}".encode()

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "send `authorization: Bearer <token>` with the run's token")

        self.deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, details):
        presented = dict(details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(presented.encode(), self.expected):
            return continuation(details)
        return self.deny


def serve_health(address: str) -> None:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body, code = (b"ok\n", 200) if self.path == "/healthz" else (b"not found\n", 404)
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    host, _, port = address.rpartition(":")
    httpd = http.server.ThreadingHTTPServer((host.strip("[]"), int(port)), Health)
    httpd.timeout = 10
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:50060", help="gRPC address HOST:PORT (port 0: any free port)")
    p.add_argument("--token-file", help="file holding the token every rpc must present (default: $ARLAS_TOKEN)")
    p.add_argument("--health-listen", help="HOST:PORT for GET /healthz")
    p.add_argument("--workers", type=int, default=8, help="rpc worker threads")
    args = p.parse_args(argv)
    token = os.environ.get("ARLAS_TOKEN")
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    interceptors = [RequireToken(token)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers), interceptors=interceptors, options=options
    )
    rpc.add_EnvironmentServicer_to_server(Service(), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print(f"cannot listen on {args.listen}", file=sys.stderr)
        return 1
    server.start()
    if args.health_listen:
        serve_health(args.health_listen)
    host = args.listen.rpartition(":")[0]
    print(f"listening on {host}:{port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
