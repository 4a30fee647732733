"""One forward in eval under inference_mode: outputs freed when their last reader has run (under autocast: each
row in its dtype, its input copies freed when it returns, the weight copies not cached).

The forward-only pass that generation's prefill and decode steps will extend (a KV cache alive across them)."""

from __future__ import annotations

from ...core import num
from .forward import EVAL, Frame, Pass, is_chain, readers
from .parameters import param_bytes
from .peaks import Peak


class Inference(Pass):
    def run(self) -> Peak:
        tape, size = self.tape, self.size
        tape.events = None  # no allocator replay (no recording of inference to hold it against)
        tape.start("forward")
        self.before()
        x = tape.new(tape.size(0, num.mul(self.net.input) * size), "batch")
        count = readers(self.rows, self.net.output_rows)  # the caller holds the outputs
        x.refs += count.get("input", 0)
        # nn.Sequential drops an input before the activation, archcalc's Graph after the row
        self.frame = Frame(tape, {"input": x}, count, is_chain(self.net))
        for row in self.rows:
            self.forward_row(row)
        return tape.peak("forward")

    def before(self) -> None:
        """The parameters and buffers."""
        tape, size = self.tape, self.size
        for row in self.rows:
            for nbytes in param_bytes(row, size):
                tape.new(tape.size(nbytes, 0), "parameters", mark=False)
            buffers = row.layer.buffer_bytes(row.input, size)
            if buffers != 0:
                tape.new(tape.size(buffers, 0), "buffers", mark=False)

    def forward_row(self, row) -> None:
        if row.layer.returns_input_in_eval or row.layer.is_view():
            self.view_row(row, self.frame)
            self.amp.view(row)
        else:
            self.op_row(row, self.frame, EVAL, recorded=False)
