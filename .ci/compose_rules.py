"""What the Compose schema cannot say about docker-compose.yml (run by .ci/compose-check).

Usage: python compose_rules.py docker-compose.yml [--self-test]
Exits non-zero, naming each broken rule, when the file breaks one.
"""

import re
import sys
from pathlib import Path

from ruamel.yaml import YAML

# Images with no shell and no wget/curl inside: a CMD health check cannot run in them. The
# plain `nats` image is distroless; its `-alpine` variant has busybox.
SHELL_LESS = [re.compile(r"^nats:(?!.*alpine)")]


def problems(path: Path) -> list[str]:
    compose = YAML(typ="safe").load(path.read_text())
    found = []
    services = compose.get("services", {})
    for name, service in services.items():
        image = service.get("image")
        if image is None and "build" not in service:
            found.append(f"{name}: neither image nor build")
        if image is not None:
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            # A version (16.6, v2.55.1, 2.10.22-alpine), not a name that moves (latest, 16).
            if not re.search(r"\d+\.\d+", tag):
                found.append(f"{name}: image {image!r} is not pinned to a version")
            test = (service.get("healthcheck") or {}).get("test")
            if test and any(p.search(image) for p in SHELL_LESS):
                found.append(f"{name}: {image!r} has no shell or tools for the health check {test!r}")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not (path.parent / source).exists():
                found.append(f"{name}: bind mount {source!r} does not exist")
    server = services.get("server", {})
    metrics_addr = str((server.get("environment") or {}).get("METRICS_ADDR", ""))
    prometheus_config = path.parent / "deploy/prometheus/prometheus.yml"
    if "prometheus" in services:
        port = metrics_addr.rpartition(":")[2]
        if not port or f"server:{port}" not in prometheus_config.read_text():
            found.append(f"prometheus: does not scrape the server's METRICS_ADDR ({metrics_addr!r})")
    return found


def self_test() -> None:
    """The rules must be able to fail."""
    import tempfile

    bad = """
services:
  nats:
    image: nats:2.10
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8222/healthz"]
  db:
    image: postgres:latest
  cache:
    image: redis:7
  web:
    image: example
    volumes:
      - ./no/such/file.yml:/etc/file.yml:ro
"""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "docker-compose.yml"
        path.write_text(bad)
        found = problems(path)
    expected = ["nats: 'nats:2.10' has no shell", "db: image 'postgres:latest'", "cache: image 'redis:7'", "web: image 'example'", "web: bind mount"]
    missed = [e for e in expected if not any(f.startswith(e) for f in found)]
    if missed:
        sys.exit(f"compose rules self-test: not caught: {missed} (found {found})")


def main() -> None:
    self_test()
    path = Path(sys.argv[1])
    found = problems(path)
    for problem in found:
        print(f"{path}: {problem}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"{path}: follows the Compose schema and the rules of .ci/compose_rules.py")


if __name__ == "__main__":
    main()
