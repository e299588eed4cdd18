"""The matmul FLOPs XLA compiles a train step to: a step-time ratio without the machine's noise.

Timing a step on a shared machine moves by 20-50 % with other tenants (projection_overhead.py);
the dots of the optimized HLO do not. Counting them shows which backward passes a step takes,
as a profile's matmul thunks would, before and after a change.
"""

import re

import numpy as np

from mtl_keras.backend import tf

# "%name = f32[1024,256]{1,0} dot(%lhs, %rhs), lhs_contracting_dims={1}, ...": the result's name,
# dimensions and opcode, then the operands.
INSTRUCTION = re.compile(r"\s*(?:ROOT\s+)?(%[\w.\-]+)\s*=\s*\w+\[([\d,]*)\]\S*\s+([\w\-]+)\((.*)")
CONTRACTING = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


def dot_flops(hlo):
    """(number of dot instructions, their FLOPs: 2 x output elements x contracted length) in HLO text."""
    shapes, dots = {}, []
    for line in hlo.splitlines():
        match = INSTRUCTION.match(line)
        if not match:
            continue
        name, dims, opcode, rest = match.groups()
        shapes[name] = [int(v) for v in dims.split(",") if v]
        if opcode == "dot":
            contracting = CONTRACTING.search(rest)
            dots.append((shapes[name], rest.split(",")[0].strip(), contracting.group(1) if contracting else ""))
    flops = 0
    for out, lhs, contracting in dots:
        length = int(np.prod([shapes[lhs][int(i)] for i in contracting.split(",") if i]))
        flops += 2 * int(np.prod(out)) * length
    return len(dots), flops


def train_step_dot_flops(model, x, y):
    """``dot_flops`` of ``model.train_step`` on the batch (x, y) compiled by XLA (traced and
    compiled, never run: the model's weights and optimizer are left as they are)."""
    step = tf.function(lambda features, labels: model.train_step((features, labels)), jit_compile=True)
    return dot_flops(step.experimental_get_compiler_ir(x, y)(stage="optimized_hlo"))
