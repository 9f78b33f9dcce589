#!/bin/bash
# PageRank PDHG-Net on the H100: train a signed and a plain model (same data, 8 layers) on larger
# graphs, then benchmark them against cold / power starts. Output under $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
mkdir -p /tmp/site/graphviz && echo "class Digraph: pass" > /tmp/site/graphviz/__init__.py
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
python3 -c "import torch; print(torch.__version__)" >> $OUT/gpu.txt
SETS="1000:96:10000 4000:64:20000 8000:32:30000 32000:32:50000 100000:16:60000"
for kind in signed plain; do
  timeout 330 python3 examples/train_pagerank_model.py --device cuda --work /tmp/w_$kind \
    --out $OUT/pagerank_$kind.pt --messages $kind --layers 8 --epochs 40 --threads 4 \
    --train-sets $SETS --eval-nodes > $OUT/train_$kind.log 2>&1 &
done
wait
ls -la $OUT
B="python3 benchmarks/pdhgnet.py --device cuda --seeds 2 --reps 3 --time-limit 20 --families pagerank"
timeout 150 $B --pagerank-model $OUT/pagerank_signed.pt --out $OUT/bench_signed > $OUT/bench_signed.log 2>&1
timeout 60 $B --pagerank-nodes 1000000 --pagerank-model $OUT/pagerank_plain.pt --out $OUT/bench_plain > $OUT/bench_plain.log 2>&1
timeout 60 $B --pagerank-nodes 1000000 --out $OUT/bench_bundled > $OUT/bench_bundled.log 2>&1
tail -5 $OUT/*.log
