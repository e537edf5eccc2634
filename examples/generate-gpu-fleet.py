#!/usr/bin/env python3
"""Writes examples/gpu-fleet.om: three hours of an ML fleet's metrics, as a Prometheus
scraping every 15 s would have stored them, in OpenMetrics text for
`kiln tsdb create-blocks-from openmetrics` (or `promtool tsdb create-blocks-from
openmetrics`).

    python3 examples/generate-gpu-fleet.py            # writes examples/gpu-fleet.om
    python3 examples/generate-gpu-fleet.py -o FILE    # elsewhere ('-' for stdout)

Python 3 standard library only. The output is deterministic: the same script writes the
same bytes on every machine and Python version (its own random number generator, no
clock, no hash randomisation).

The metric and label names are the ones the lecture (advanced-prometheus-lecture.md)
queries and the rule pack (rules/*.yml) records from, so every valid lecture query, every
recording rule and every alert expression answers on this data. The lecture is not
consistent about two label names, so the series carry both spellings with equal values:
`version` (its queries) and `model_version` (its recording rules) on inference metrics,
`stage` (its recording rules) and `pipeline_stage` (its queries) on pipeline metrics.

What happens between 2026-01-01 00:00 and 03:00 UTC (the story the queries tell):
- GPU fleet (nvidia_gpu_* per node/gpu_id, percent duty cycle as nvidia_gpu_exporter
  reports it): llama-pretrain keeps gpu-node-1's four GPUs around 90 % busy;
  bert-finetune's two GPUs idle at about 12 % (input-bound: GPUUnderutilized); the
  memory of gpu-node-2 GPU 1 creeps up 4 GiB an hour (predicted to run out within 4 h);
  resnet-sweep's two GPUs drop to 0 % when the job hangs at 01:50.
- Training (training_* per job_id): llama-pretrain's worker restarts at 01:40 (two
  missed scrapes, `up` 0, and its samples counter resets); resnet-sweep stops making
  progress at 01:50 (TrainingStalled); losses fall epoch by epoch (`epoch` label).
- Inference (model_* per model_name/version): llm-chat v1's traffic doubles between 01:00
  and 02:00 and its p95 latency rises with it; the llm-chat v2 canary answers too slowly
  for a 500 ms objective all along (ModelLatencySLOBurnRate); fraud-detector v3's errors
  jump from 0.4 % to 8 % at 02:00 (ModelHighErrorRate) and its accuracy falls from 0.94 to
  0.80 at 02:05.
- Pipelines (data_* per pipeline_name/stage): a replay quintuples clickstream-etl's
  intake from 02:25 to 02:35 (the lecture's z-score anomaly); images-etl's transform
  stage slows at 01:45 and its lag passes 15 minutes at about 02:03 (DataPipelineLag);
  clickstream's session_length feature drifts after 02:00.
- node_filesystem_avail_bytes of gpu-node-1's /data falls 15 GiB an hour (checkpoints):
  predicted to be exhausted within 24 h. metric_value, the lecture's placeholder for its
  stddev anomaly rule, is a feature-store queue depth that jumps at 02:24.
- `up` for every target.
"""

import argparse
import math
import os
import sys

START = 1767225600  # 2026-01-01T00:00:00Z
STEP = 15  # seconds between scrapes
STEPS = 720  # three hours
GIB = 1024**3
MIB = 1024**2


def minute(k):
    """Minutes since 00:00 of scrape k."""
    return k * STEP / 60.0


class Rng:
    """SplitMix64: small, fully specified here so the output never changes with Python."""

    def __init__(self, seed):
        self.state = (seed * 0x9E3779B97F4A7C15 + 0x6A09E667F3BCC908) & (2**64 - 1)

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 31)

    def uniform(self):
        """In [0, 1)."""
        return (self.next_u64() >> 11) / float(1 << 53)

    def gauss(self):
        """Standard normal (Box-Muller)."""
        u1 = max(self.uniform(), 1e-300)
        u2 = self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def seed_of(text):
    """A seed from a string (FNV-1a), independent of Python's hash randomisation."""
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & (2**64 - 1)
    return h


def phi(x):
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def bump(m, start, end):
    """0 outside [start, end] minutes, rising to 1 in the middle (a smooth hump)."""
    if m <= start or m >= end:
        return 0.0
    return math.sin(math.pi * (m - start) / (end - start)) ** 2


def fmt(v):
    """A sample value as OpenMetrics text: integers without a decimal point."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(round(v, 6))


class Family:
    """One metric family: its TYPE and HELP, and its series in the order written."""

    def __init__(self, name, kind, help_text):
        self.name = name
        self.kind = kind
        self.help = help_text
        # labels as text -> [(sample name, full labels as text, values per scrape)];
        # None among the values: no sample (a failed scrape).
        self.metrics = {}

    def add(self, labels, values, suffix="", extra=None):
        """Adds the series `name + suffix` of the metric `labels` (plus `extra` labels,
        such as a bucket's `le`)."""
        key = render_labels(labels)
        full = render_labels(dict(labels, **(extra or {})))
        self.metrics.setdefault(key, []).append((self.name + suffix, full, values))


def render_labels(labels):
    return ",".join('%s="%s"' % (k, v) for k, v in sorted(labels.items()))


FAMILIES = {}


def family(name, kind, help_text):
    if name not in FAMILIES:
        FAMILIES[name] = Family(name, kind, help_text)
    return FAMILIES[name]


UP = {}  # (job, instance) -> values


def target(job, instance, down=()):
    """Records the `up` series of a target; `down` lists the scrapes that failed.
    Returns the target labels its series carry: none, to keep the file near 10 MB (a
    `job` and an `instance` label on every line would add a third); `up` has both."""
    UP[(job, instance)] = [0 if k in down else 1 for k in range(STEPS)]
    return {}


def scraped(values, down):
    """Drops the samples of failed scrapes."""
    return [None if k in down else v for k, v in enumerate(values)]


# --- GPU fleet -------------------------------------------------------------------------

GPUS = [
    # node, gpu_id, job_name, namespace
    ("gpu-node-1", "0", "llama-pretrain", "llm-research"),
    ("gpu-node-1", "1", "llama-pretrain", "llm-research"),
    ("gpu-node-1", "2", "llama-pretrain", "llm-research"),
    ("gpu-node-1", "3", "llama-pretrain", "llm-research"),
    ("gpu-node-2", "0", "bert-finetune", "nlp"),
    ("gpu-node-2", "1", "bert-finetune", "nlp"),
    ("gpu-node-2", "2", "resnet-sweep", "vision"),
    ("gpu-node-2", "3", "resnet-sweep", "vision"),
]
# Scrapes during which llama-pretrain's worker restarts (01:40:00 and 01:40:15).
LLAMA_RESTART = {400, 401}
RESNET_HANG = 440  # 01:50
H100_MEMORY = 80 * GIB


def gpu_fleet():
    duty = family(
        "nvidia_gpu_duty_cycle",
        "gauge",
        "Percent of time over the past sample period during which one or more kernels was executing on the GPU.",
    )
    used = family("nvidia_gpu_memory_used_bytes", "gauge", "Memory used by the GPU device in bytes.")
    total = family("nvidia_gpu_memory_total_bytes", "gauge", "Total memory of the GPU device in bytes.")
    for node in ("gpu-node-1", "gpu-node-2"):
        target("nvidia-gpu", node + ":9445")
    for node, gpu, job_name, namespace in GPUS:
        rng = Rng(seed_of("gpu/" + node + "/" + gpu))
        labels = {
            "node": node,
            "gpu_id": gpu,
            "job_name": job_name,
            "namespace": namespace,
        }
        d, u = [], []
        # A training job's memory is steady (the allocator keeps what it reserved).
        base_mem = {"llama-pretrain": 66, "bert-finetune": 34, "resnet-sweep": 52}[job_name]
        for k in range(STEPS):
            m = minute(k)
            if job_name == "llama-pretrain":
                busy = 90 + 3 * math.sin(m / 7.0 + int(gpu)) + 2.5 * rng.gauss()
                mem = base_mem * GIB + 4 * MIB * rng.gauss()
                if k in LLAMA_RESTART:
                    busy = 0
            elif job_name == "bert-finetune":
                busy = 12 + 4 * rng.gauss()
                mem = base_mem * GIB + 4 * MIB * rng.gauss()
                if gpu == "1":
                    # A slow leak: 58 GiB at 00:00, 4 GiB more every hour.
                    mem = 58 * GIB + 4 * GIB * m / 60 + 16 * MIB * rng.gauss()
            else:
                busy = 76 + 6 * rng.gauss() if k < RESNET_HANG else 0
                mem = base_mem * GIB + 4 * MIB * rng.gauss()
            d.append(min(100, max(0, round(busy))))
            # NVML reports memory in MiB.
            u.append(round(mem / MIB) * MIB)
        duty.add(labels, d)
        used.add(labels, u)
        total.add(labels, [H100_MEMORY] * STEPS)


def filesystems():
    avail = family("node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users in bytes.")
    for node, start_gib, per_hour_gib in (("gpu-node-1", 310, -15), ("gpu-node-2", 820, 0)):
        labels = target("node", node + ":9100")
        # node_exporter's series tell nodes apart by their target's `instance`.
        labels.update({"instance": node + ":9100", "device": "/dev/nvme1n1", "fstype": "ext4", "mountpoint": "/data"})
        rng = Rng(seed_of("fs/" + node))
        values = []
        for k in range(STEPS):
            gib = start_gib + per_hour_gib * minute(k) / 60 + 0.05 * rng.gauss()
            values.append(round(gib * GIB / 4096) * 4096)
        avail.add(labels, values)


# --- Training ----------------------------------------------------------------------------

TRAINING_JOBS = [
    # job_id, job_name, namespace, gpus, steps/s, samples per step, first step, total steps,
    # steps per epoch, theoretical samples/s per GPU
    ("llama-pretrain-0412", "llama-pretrain", "llm-research", 4, 1.6, 256, 121000, 200000, 5000, 150),
    ("bert-finetune-0977", "bert-finetune", "nlp", 2, 0.4, 32, 9000, 30000, 1500, 200),
    ("resnet-sweep-1203", "resnet-sweep", "vision", 2, 2.0, 128, 20000, 50000, 4000, 400),
]


def training():
    loss = family("training_loss", "gauge", "Current training loss")
    samples = family("training_samples_processed", "counter", "Total number of samples processed")
    current = family("training_current_step", "gauge", "Optimizer steps completed so far.")
    total = family("training_total_steps", "gauge", "Optimizer steps the job is configured to run.")
    gpu_count = family("training_gpu_count", "gauge", "GPUs the training job runs on.")
    max_tp = family(
        "training_theoretical_max_throughput",
        "gauge",
        "Samples per second one GPU could process for this model at peak FLOPS.",
    )
    allocation = family("container_gpu_allocation", "gauge", "GPUs allocated to the job's containers.")
    target("kube-state-metrics", "kube-state-metrics:8080")
    for job_id, job_name, ns, gpus, sps, batch, first, total_steps, per_epoch, peak in TRAINING_JOBS:
        rng = Rng(seed_of("train/" + job_id))
        down = LLAMA_RESTART if job_name == "llama-pretrain" else set()
        labels = target("training", job_name + "-0:8000", down)
        labels.update({"job_id": job_id, "job_name": job_name, "namespace": ns})
        step = float(first)
        # The worker process has been up since before midnight: its counter starts high.
        processed = float(first - 80000 if first > 80000 else first) * batch
        by_epoch = {}
        s_values, c_values = [], []
        for k in range(STEPS):
            stalled = job_name == "resnet-sweep" and k >= RESNET_HANG
            if k in down:
                # Restarting: no progress, no samples; the new process counts from 0.
                processed = 0.0
            elif not stalled:
                d = round(sps * STEP * (1 + 0.05 * rng.gauss()))
                step += d
                processed += d * batch
            s_values.append(None if k in down else processed)
            c_values.append(None if k in down else step)
            if k not in down:
                epoch = str(int(step) // per_epoch)
                floor = {"llama-pretrain": 1.2, "bert-finetune": 0.18, "resnet-sweep": 0.45}[job_name]
                value = floor + 2.0 * math.exp(-step / 60000.0) + 0.02 * rng.gauss()
                by_epoch.setdefault(epoch, [None] * STEPS)[k] = round(value, 4)
        for epoch in sorted(by_epoch, key=int):
            loss.add(dict(labels, epoch=epoch), by_epoch[epoch])
        samples.add(labels, s_values, "_total")
        current.add(labels, c_values)
        total.add(labels, scraped([total_steps] * STEPS, down))
        gpu_count.add(labels, scraped([gpus] * STEPS, down))
        max_tp.add(labels, scraped([peak] * STEPS, down))
        allocation.add(
            {"namespace": ns, "job_id": job_id},
            [gpus] * STEPS,
        )


# --- Inference ---------------------------------------------------------------------------

LE = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
ERRORS_FROM = 480  # 02:00: fraud-detector v3's error rate jumps
ACCURACY_DROP = 500  # 02:05: fraud-detector v3's accuracy falls


def inference():
    hist = family("model_inference_duration_seconds", "histogram", "Time to answer one inference request.")
    predictions = family("model_predictions", "counter", "Inference requests answered.")
    errors = family("model_errors", "counter", "Inference requests that failed.")
    accuracy = family("model_accuracy", "gauge", "Accuracy of the model on the live evaluation sample.")
    models = [
        # model_name, version, requests/s, median latency s, spread (sigma of log), error ratio
        ("llm-chat", "v1", 36.0, 0.11, 0.5, 0.003),
        ("llm-chat", "v2", 4.0, 0.36, 0.55, 0.005),
        ("fraud-detector", "v3", 120.0, 0.018, 0.35, 0.004),
    ]
    for name, version, rps, median, sigma, err_ratio in models:
        rng = Rng(seed_of("inference/" + name + "/" + version))
        labels = target("serving", "%s-%s:8080" % (name, version))
        labels.update({"model_name": name, "model_version": version, "version": version})
        buckets = [0.0] * len(LE)
        count = total_s = preds = errs = 0.0
        b_values = [[] for _ in LE]
        sum_values, count_values, p_values, e_values, a_values = [], [], [], [], []
        for k in range(STEPS):
            m = minute(k)
            rate, med, p = rps, median, err_ratio
            if name == "llm-chat" and version == "v1":
                surge = bump(m, 60, 120)
                rate *= 1 + surge
                med *= 1 + 1.5 * surge
            if name == "fraud-detector" and k >= ERRORS_FROM:
                p = 0.08
            n = max(0, round(rate * STEP * (1 + 0.05 * rng.gauss())))
            med *= math.exp(0.04 * rng.gauss())
            for i, le in enumerate(LE):
                buckets[i] += round(n * phi((math.log(le) - math.log(med)) / sigma))
                b_values[i].append(buckets[i])
            count += n
            total_s += n * med * math.exp(sigma * sigma / 2)
            preds += n
            errs += min(n, max(0, round(n * p + rng.gauss() * math.sqrt(n * p))))
            sum_values.append(round(total_s, 3))
            count_values.append(count)
            p_values.append(preds)
            e_values.append(errs)
            acc = {"llm-chat": 0.91 if version == "v1" else 0.92, "fraud-detector": 0.94}[name]
            if name == "fraud-detector" and k >= ACCURACY_DROP:
                acc = 0.80
            a_values.append(round(acc + 0.003 * rng.gauss(), 4))
        for le, values in zip(LE, b_values):
            hist.add(labels, values, "_bucket", {"le": repr(le)})
        hist.add(labels, count_values, "_bucket", {"le": "+Inf"})
        hist.add(labels, count_values, "_count")
        hist.add(labels, sum_values, "_sum")
        predictions.add(labels, p_values, "_total")
        errors.add(labels, e_values, "_total")
        accuracy.add(labels, a_values)


# --- Data pipelines ----------------------------------------------------------------------

STAGES = ["extract", "transform", "load"]
REPLAY = (581, 620)  # 02:25:15 to 02:35: clickstream-etl's intake quintuples
IMAGES_SLOW = 420  # 01:45: images-etl's transform stage slows down


def pipelines():
    records = family("data_records_processed", "counter", "Records a pipeline stage has processed.")
    dsum = family("data_stage_duration_seconds", "summary", "Time a pipeline stage spends on one batch.")
    lag = family("data_pipeline_lag_seconds", "gauge", "How far the pipeline's output is behind real time.")
    failures = family("data_validation_failures", "counter", "Records that failed a validation rule.")
    quality = family("data_quality_score", "gauge", "Share of records passing a validation rule (0-1).")
    drift = family(
        "feature_distribution_distance",
        "gauge",
        "Distance between the live and the training distribution of a feature.",
    )
    specs = [
        # pipeline, dataset, records/s per stage, seconds per batch per stage,
        # failure ratio per validation rule
        ("clickstream-etl", "clickstream", [2400, 2350, 2300], [0.4, 1.8, 0.9], {"schema": 0.002, "null_check": 0.01}),
        ("images-etl", "images", [180, 178, 176], [2.5, 6.0, 3.0], {"schema": 0.0005, "null_check": 0.005}),
    ]
    batch = 500
    for pipeline, dataset, rates, secs, rules in specs:
        base = target("pipeline", pipeline + ":9102")
        base["pipeline_name"] = pipeline
        intake = []
        for s, stage in enumerate(STAGES):
            rng = Rng(seed_of("pipeline/" + pipeline + "/" + stage))
            labels = dict(base, stage=stage, pipeline_stage=stage)
            done = 0.0
            batches = 0
            spent = 0.0
            r_values, s_values, c_values = [], [], []
            for k in range(STEPS):
                rate = rates[s]
                per_batch = secs[s]
                if pipeline == "clickstream-etl" and REPLAY[0] <= k < REPLAY[1]:
                    rate *= 5
                if pipeline == "images-etl" and k >= IMAGES_SLOW and stage != "extract":
                    rate *= 0.67
                    if stage == "transform":
                        per_batch = 14.0
                n = round(rate * STEP * (1 + 0.02 * rng.gauss()))
                if stage == "extract":
                    intake.append(n)
                done += n
                new_batches = int(done // batch) - batches
                batches += new_batches
                spent += new_batches * per_batch * math.exp(0.1 * rng.gauss())
                r_values.append(done)
                s_values.append(round(spent, 3))
                c_values.append(batches)
            records.add(labels, r_values, "_total")
            dsum.add(labels, s_values, "_sum")
            dsum.add(labels, c_values, "_count")
        rng = Rng(seed_of("lag/" + pipeline))
        behind = []
        for k in range(STEPS):
            seconds = 45 + 5 * rng.gauss()
            if pipeline == "images-etl" and k >= IMAGES_SLOW:
                seconds += 0.8 * (k - IMAGES_SLOW) * STEP
            behind.append(round(max(0.0, seconds), 1))
        lag.add(base, behind)
        for rule, ratio in sorted(rules.items()):
            rng = Rng(seed_of("validation/" + pipeline + "/" + rule))
            failed = 0.0
            f_values, q_values = [], []
            for k in range(STEPS):
                n = intake[k]
                bad = max(0, round(n * ratio + rng.gauss() * math.sqrt(n * ratio)))
                failed += bad
                f_values.append(failed)
                q_values.append(round(1 - ratio * (1 + 0.1 * rng.gauss()), 5))
            failures.add(dict(base, validation_rule=rule), f_values, "_total")
            quality.add(dict(base, dataset=dataset, validation_rule=rule), q_values)
    store = target("feature-store", "feature-store-0:8080")
    for dataset, feature, level in (
        ("clickstream", "country", 0.02),
        ("clickstream", "session_length", 0.04),
        ("images", "brightness", 0.06),
    ):
        rng = Rng(seed_of("drift/" + dataset + "/" + feature))
        values = []
        for k in range(STEPS):
            v = level + 0.003 * rng.gauss()
            if feature == "session_length" and minute(k) > 120:
                v += 0.14 * min(1.0, (minute(k) - 120) / 20)
            values.append(round(max(0.0, v), 4))
        drift.add(dict(store, dataset=dataset, feature_name=feature), values)


def placeholder():
    """metric_value: the lecture's placeholder gauge for its stddev anomaly rule."""
    fam = family(
        "metric_value",
        "gauge",
        "The lecture's placeholder for any gauge: here the feature store's request queue depth.",
    )
    rng = Rng(seed_of("metric_value"))
    values = []
    for k in range(STEPS):
        v = 100 + 6 * rng.gauss()
        if minute(k) >= 144:  # 02:24
            v += 60
        values.append(round(v))
    fam.add({}, values)


# --- Output --------------------------------------------------------------------------------


def up():
    fam = family("up", "gauge", "1 if the target was scraped successfully, 0 if not.")
    for (job, instance), values in sorted(UP.items()):
        fam.add({"job": job, "instance": instance}, values)


def write(out):
    for fam in FAMILIES.values():
        out.write("# HELP %s %s\n# TYPE %s %s\n" % (fam.name, fam.help, fam.name, fam.kind))
        for series in fam.metrics.values():
            # One metric's samples in time order: a histogram's buckets, count and sum
            # of one scrape stay together (one OpenMetrics MetricPoint).
            for k in range(STEPS):
                t = START + k * STEP
                for name, labels, values in series:
                    if values[k] is not None:
                        braced = "{%s}" % labels if labels else ""
                        out.write("%s%s %s %d\n" % (name, braced, fmt(values[k]), t))
    out.write("# EOF\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=os.path.join(here, "gpu-fleet.om"))
    args = parser.parse_args()
    gpu_fleet()
    filesystems()
    training()
    inference()
    pipelines()
    placeholder()
    up()
    if args.output == "-":
        write(sys.stdout)
    else:
        with open(args.output, "w", encoding="utf-8", newline="\n") as out:
            write(out)


if __name__ == "__main__":
    main()
