"""From a command to jobs: which stages run, whether their inputs are good, and in what order.

* :mod:`.stages`: the pipeline as a list of the stages' own descriptions, what a config skips, and
  each stage's state.
* :mod:`.pipeline`: ``Pipeline`` chooses the stages to run, checks them all, then submits each
  after the jobs making what it reads.
* :mod:`.submit`: what a stage command (``gptfl synth``, ``jobs/synth.py``...) does: submit one
  stage (and its prerequisites), wait, print its summary.

The CLI (``gptfl_hpc.commands``) and the login-node scripts (``jobs/``) both call this package; it
calls the launch layer (``gptfl_hpc.launch``) to submit. The science never imports it.
"""
