"""Every funnelhub service in docker-compose.yml gets configuration funnelhub accepts.

Loads each service's environment and runs `funnelhub config` with it: an unknown or
misspelled FUNNELHUB_* key fails (the config denies unknown fields), and each value must
show up in the effective configuration.

usage: check_env.py PATH_TO_FUNNELHUB_BINARY
"""
import os
import subprocess
import sys

import yaml

binary = os.path.abspath(sys.argv[1])
with open("docker-compose.yml") as f:
    compose = yaml.safe_load(f)

checked = 0
for name, service in compose["services"].items():
    if service.get("image") != "funnelhub:local":
        continue
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    run_env = {"PATH": os.environ["PATH"], **env}
    result = subprocess.run([binary, "config"], env=run_env, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        sys.exit(f"{name}: funnelhub refuses its configuration: {result.stderr.strip()}")
    for key, value in env.items():
        if key.startswith("FUNNELHUB_") and value not in result.stdout:
            sys.exit(f"{name}: {key}={value} does not appear in the effective configuration")
    checked += 1

if checked == 0:
    sys.exit("no funnelhub service found in docker-compose.yml")
print(f"docker-compose: {checked} funnelhub service(s) configured correctly")
