"""The Dockerfile, the README's Spaces front matter, the requirements and CI agree with each other."""

import re
from pathlib import Path

import pytest

from latentindigo.priors import SD21_REPO, SD21_REVISION, hub_files

ROOT = Path(__file__).resolve().parent.parent


def read(name: str) -> str:
    return (ROOT / name).read_text()


def front_matter() -> dict:
    text = read("README.md")
    assert text.startswith("---\n"), "README.md must start with the Spaces front matter"
    block = text.split("---\n")[1]
    fields, key = {}, None
    for line in block.splitlines():
        if line.startswith("  - ") and key:
            fields.setdefault(key, []).append(line[4:].strip())
        elif ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            if value:
                fields[key] = value.strip('"')
    return fields


def pins(name: str) -> dict:
    out = {}
    for line in read(name).splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*(==|>=)\s*([^\s#]+)", line)
        if match:
            out[match.group(1).lower()] = match.group(3)
    return out


def test_spaces_front_matter_matches_the_app_and_requirements():
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["app_file"] == "app.py" and (ROOT / "app.py").exists()
    assert meta["sdk_version"] == pins("requirements.txt")["gradio"]
    python = re.search(r"^FROM python:(\d+\.\d+)", read("Dockerfile"), re.M).group(1)
    assert meta["python_version"] == python
    assert meta["suggested_hardware"]


def test_preloaded_weights_are_the_pinned_sd21_files():
    entries = front_matter()["preload_from_hub"]
    repo, files, revision = entries[0].split(" ")
    assert (repo, revision) == (SD21_REPO, SD21_REVISION)
    assert sorted(files.split(",")) == sorted(hub_files("fp16"))  # the files load_prior("sd21") reads on a GPU


def test_dockerfile_runs_the_demo_as_uid_1000_on_7860():
    docker = read("Dockerfile")
    assert re.search(r"useradd .*--uid 1000 user", docker) and re.search(r"^USER user$", docker, re.M)
    assert re.search(r"^EXPOSE 7860$", docker, re.M)
    assert '"app.py"' in docker and '"7860"' in docker
    assert "pip install --no-cache-dir -r requirements.txt" in docker
    assert re.search(r"^ARG TORCH=cpu$", docker, re.M) and "whl/${TORCH}" in docker


@pytest.mark.parametrize("name", ["Dockerfile", ".ci/run", "README.md"])
def test_everyone_installs_the_same_torch(name):
    assert re.findall(r"torch==([\d.]+)", read(name)) and set(re.findall(r"torch==([\d.]+)", read(name))) == {"2.13.0"}


def test_ci_runs_the_readme_test_command():
    command = re.search(r"<!-- test command -->\n```bash\n(.+?)\n```", read("README.md"), re.S).group(1).strip()
    assert read(".ci/run").strip().splitlines()[-1] == command.splitlines()[-1].split("&& ")[-1]
    assert "requirements-test.txt" in command and "requirements-test.txt" in read(".ci/run")
