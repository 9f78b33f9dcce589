#!/bin/bash
# brief S device run: before/after setup phases, micro-timings, CUDA tests (one call)
R=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$R
L=$OUT/run_log.txt
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv; python3 -c "import torch; print(torch.__version__)"; } > $L 2>&1
rm -rf /tmp/old && mkdir /tmp/old && cp -r l2o bilevel /tmp/old/ && cp .devdata/setup_s/scaling_old.py /tmp/old/l2o/pdhg/scaling.py
CMD="-m l2o.pdhg pagerank:1000000 pagerank:100000 $R/l2o/data/afiro.mps.gz --device cuda --reps 3"
echo "== before $(date -u +%T)" >> $L
(cd /tmp/old && PYTHONPATH=/tmp/site:/tmp/old timeout 75 python3 $CMD --json $OUT/setup_segments_before.json) > $OUT/setup_segments_before_log.txt 2>&1; echo "rc $?" >> $L
echo "== after $(date -u +%T)" >> $L
timeout 60 python3 $CMD --json $OUT/setup_segments_after.json > $OUT/setup_segments_after_log.txt 2>&1; echo "rc $?" >> $L
echo "== micro $(date -u +%T)" >> $L
timeout 50 python3 benchmarks/setup_micro.py --nodes 1000000 --old .devdata/setup_s/scaling_old.py --json $OUT/setup_micro.json >> $L 2>&1; echo "rc $?" >> $L
echo "== tests $(date -u +%T)" >> $L
timeout 75 python3 -m pytest -q tests/l2o -k "pdhg or scaling or solve" -x > $OUT/tests_cuda_segments.txt 2>&1; echo "rc $?" >> $L
date -u >> $L
