#!/usr/bin/env bash
# Install searchkit, index the demo corpus and run a few example searches.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
searchkit() { .venv/bin/searchkit "$@"; }
rm -rf demo-index
searchkit index corpora/demo/corpus.jsonl --index demo-index
searchkit info --index demo-index
for query in "how does self-attention weigh words" "keeping bread dough rising" "finding planets around other stars"; do
  echo; echo "== searchkit search \"$query\" -k 3"
  searchkit search "$query" --index demo-index -k 3
done
echo; echo "== searchkit search \"training tips\" --where 'topic=sports' --where 'year>=2018' -k 3"
searchkit search "training tips" --index demo-index --where "topic=sports" --where "year>=2018" -k 3
echo; echo "== searchkit search \"BM25 term saturation\" --mode hybrid -k 3"
searchkit search "BM25 term saturation" --index demo-index --mode hybrid -k 3
echo; echo "== searchkit ask \"When was 51 Pegasi b discovered?\" -k 2"
searchkit ask "When was 51 Pegasi b discovered?" --index demo-index -k 2
