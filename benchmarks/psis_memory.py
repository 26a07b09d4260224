"""Peak memory of ``ppmodels.infer.psis`` as the number of draws grows, in chunks and not.

Each run is a fresh process (peak resident set size, ``ru_maxrss``), on a regression with
2,000 observations and 5 coefficients under a trained mean-field guide. Draws are taken
``chunk`` at a time, so the model's per-observation densities (draws x observations) never
exist all at once; what grows with the draws is only what PSIS returns (the log weights
and the draws themselves: draws x latents).

    python benchmarks/psis_memory.py            # the table in benchmarks/README.md
"""

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import pyro, pyro.distributions as dist, torch
from pyro.infer.autoguide import AutoNormal
from ppmodels.infer import fit, psis

num_samples, chunk = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
x = torch.randn(2000, 5)
y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.5 * torch.randn(2000)

def model(x, y):
    w = pyro.sample("w", dist.Normal(0.0, 5.0).expand([5]).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal((x * w).sum(-1), 0.5), obs=y)

guide = AutoNormal(model)
fit((model, guide), (x, y), epochs=300, lr=0.05, progress=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = psis(model, guide, x, y, num_samples=num_samples, chunk=chunk)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_mb": before / 1024, "after_mb": after / 1024, "k_hat": result.k_hat}))
"""


def run(num_samples, chunk):
    done = subprocess.run([sys.executable, "-c", CHILD, str(num_samples), str(chunk)], capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout)


def main(repeats=3):
    print("| draws | chunk | growth of peak RSS during PSIS (MB), each of 3 runs | k-hat |")
    print("|---|---|---|---|")
    for num_samples, chunk in [(10_000, 1000), (100_000, 1000), (400_000, 1000), (10_000, 10_000), (100_000, 100_000)]:
        runs = [run(num_samples, chunk) for _ in range(repeats)]
        if any("error" in r for r in runs):
            print(f"| {num_samples:,} | {chunk:,} | {next(r['error'] for r in runs if 'error' in r)} | - |")
            continue
        growth = ", ".join(f"{r['after_mb'] - r['before_mb']:.0f}" for r in runs)
        print(f"| {num_samples:,} | {chunk:,} | {growth} | {runs[0]['k_hat']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
