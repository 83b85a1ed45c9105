#!/usr/bin/env bash
# Retrain on production feedback and open a pull request with the result: what the monitor
# workflow's `retrain` job runs on drift (.github/workflows/monitor.yml), after
# `sentiment-pipeline export-feedback data/external/feedback.csv`. Also runs by hand from a
# clean checkout of the base branch (with `gh` logged in).
#
#  1. checks the exported feedback has labelled rows;
#  2. sets download.sources in params.yaml to the feedback first (it wins where it labels a text
#     differently: download.precedence) and the original source, comments kept; it stops with
#     an error if this checkout's download stage has no multi-source support (download.sources);
#  3. `dvc exp run` on it, `dvc exp branch` to retrain/<UTC time>;
#  4. commits the feedback CSV to that branch (data/ is git-ignored, and there is no DVC remote:
#     the pull request's pr-report job must find the file to re-run the pipeline), pushes, and
#     opens the pull request; pr-report then comments the params and metrics diff against BASE.
#
# The feedback CSV holds production texts: they become part of the branch's history. Review
# the pull request before merging, and delete the branch if it is not merged.
#
# Environment: BASE (default main), FEEDBACK (default data/external/feedback.csv), PYTHON and
# DVC (default .venv/bin/python and .venv/bin/dvc), RUN_URL (a link for the pull request body).
set -euo pipefail

BASE=${BASE:-main}
FEEDBACK=${FEEDBACK:-data/external/feedback.csv}
PYTHON=${PYTHON:-.venv/bin/python}
DVC=${DVC:-.venv/bin/dvc}
stamp=$(date -u +%Y%m%d-%H%M%S)
experiment="retrain-$stamp"
branch="retrain/$stamp"

fail() { echo "error: $*" >&2; exit 1; }

[ -f params.yaml ] || fail "params.yaml: not found; run this from the project root"
[ -f "$FEEDBACK" ] || fail "$FEEDBACK: not found; export it first: sentiment-pipeline export-feedback $FEEDBACK"

# 1-2: the feedback's rows, and params.yaml with both sources (ruamel keeps its comments)
rows=$(FEEDBACK="$FEEDBACK" "$PYTHON" - <<'EOF'
import os
import sys

import pandas as pd
from ruamel.yaml import YAML

from sentiment_pipeline.core.config import DownloadConfig, load_params
from sentiment_pipeline.core.errors import ConfigError

feedback = os.environ["FEEDBACK"]
try:
    rows = len(pd.read_csv(feedback, dtype=str, keep_default_na=False))
except (OSError, ValueError) as exc:
    sys.exit(f"error: {feedback}: not a readable CSV ({exc})")
if rows == 0:
    sys.exit(f"error: {feedback}: no labelled rows; nothing to retrain on")
if "sources" not in DownloadConfig.model_fields:
    sys.exit("error: this checkout's download stage reads one source (no download.sources in "
             "core/config.py): it cannot add the feedback to the training data")
yaml = YAML()  # round-trip: comments and layout kept
yaml.preserve_quotes = True
yaml.representer.add_representer(  # null stays `null` (ruamel writes an empty value)
    type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
with open("params.yaml", encoding="utf-8") as handle:
    params = yaml.load(handle)
download = params.get("download")
if download is None or "sources" not in download:
    sys.exit("error: params.yaml: download.sources is missing; add `sources: null` to the download "
             "section (see docs/data.md#several-sources)")
entries = list(download["sources"] or [{"name": "original"}])  # null: the one source of the section
if any(e.get("path") == feedback for e in entries):
    sys.exit(f"error: params.yaml: download.sources already reads {feedback}; nothing to add")
if any(e.get("name") == "feedback" for e in entries):
    sys.exit("error: params.yaml: download.sources already has an entry named 'feedback'")
download["sources"] = [{"name": "feedback", "source": "file", "path": feedback, "format": "csv"}, *entries]
if download.get("precedence") is not None:
    download["precedence"] = ["feedback", *download["precedence"]]
with open("params.yaml.retrain", "w", encoding="utf-8") as handle:
    yaml.dump(params, handle)
try:
    load_params("params.yaml.retrain")  # the stage's own validation, before anything runs
except ConfigError as exc:
    os.remove("params.yaml.retrain")
    sys.exit(f"error: {exc}")
os.replace("params.yaml.retrain", "params.yaml")
print(rows)
EOF
)
echo "retraining on $rows feedback row(s) from $FEEDBACK and the original data: experiment $experiment"

# 3: the feedback in place before the run: the download stage depends on the whole data/external
# folder, so what the branch will hold there must be there when dvc.lock is written. With a DVC
# remote (docs/sharing.md) the production texts stay out of git: DVC tracks the file and the
# remote holds it (the PR's pipeline pulls it); without one, git holds it on this branch only.
remote=$("$DVC" remote default 2>/dev/null || true)
if [ -n "$remote" ]; then
  "$DVC" add --quiet "$FEEDBACK"
  "$DVC" push --remote "$remote" -- "$FEEDBACK.dvc"
  tracked=("$FEEDBACK.dvc" "$(dirname "$FEEDBACK")/.gitignore")
  kept="tracked by DVC (\`$FEEDBACK.dvc\`) on the remote \`$remote\`, not in git"
else
  tracked=("$FEEDBACK")
  kept="committed here so that CI can re-run the pipeline (no DVC remote is configured: docs/sharing.md)"
fi
git add --force -- "${tracked[@]}"

# 4: the experiment, as a branch. The run leaves its results in the workspace, and the branch
# holds the same changes, so git would refuse to switch over them: switch discarding them, with
# the feedback files kept aside (whether or not the experiment's commit took them along).
"$DVC" exp run --name "$experiment"
"$DVC" exp branch "$experiment" "$branch"
aside=$(mktemp -d)
trap 'rm -rf "$aside"' EXIT
tar -cf "$aside/feedback.tar" -- "${tracked[@]}"
git switch --quiet --discard-changes "$branch"
tar -xf "$aside/feedback.tar"
git add --force -- "${tracked[@]}"
if ! git diff --cached --quiet; then
  git commit --quiet -m "retrain: the $rows feedback row(s) the experiment was trained on" -- "${tracked[@]}"
fi
git push --set-upstream origin "$branch"
gh pr create --base "$BASE" --head "$branch" --title "Retrain on production feedback ($stamp UTC)" --body "\
The monitor found drift${RUN_URL:+ ($RUN_URL)}, and this branch retrains on the $rows exported \
feedback label(s) plus the original data (\`download.sources\`, feedback first). The pr-report \
job comments the params and metrics diff against \`$BASE\`: merge only if it is better.

\`$FEEDBACK\` holds production texts and is $kept; \
delete the branch if this is not merged."
