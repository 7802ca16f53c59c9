"""The reference core: tokenizer, data, tied/untied GPT-2, the bf16 AdamW step, the trajectory format.

Read in this order to understand one step, one frame written, one frame read:
  model.py, data.py, optim.py   the Flannel/Thimble GPT-2, batches in the Trainer's order, AdamW
  step.py, train.py, run.py     one step as the Trainer computes it; the state that repeats it; the loop
  format.py, recorder.py, bf16.py   the file layout; the writer (frames in, HDF5 out); bf16 in HDF5
  trajectory.py                     the bit-exact reader
Beside them: a new file's layout (layout.py, environment.py, netcdf.py), safe reading (h5read.py),
durability (disk.py, lock.py, reopen.py, checkpoint.py, h5clear.py), codecs (encoding.py), the
/tokens/ tables (token_tables.py), tokenizer.py, device.py.

fast/ holds the speed machinery (blockwise loss, GEMM kernels, CUDA graphs, allocator
settings) behind one seam, `core.step.StepKernels`; nothing outside fast/ imports it.
Knows nothing of scenarios or pytest; `harness` wires it together.
"""
