"""Label discovery: the server learns the union of the clients' label names, not who holds which.

Each client encodes its label names into an Invertible Bloom Lookup Table (``iblt``), masks it
with pairwise masks that cancel in the sum (``gptfl_hpc.secure_sum``), and sends only the masked
table; the server sums the tables and decodes the union with each label's client count.

- ``iblt``: the linear table, its sizing and its peeling decoder (pure NumPy);
- ``files``: the round's files (params, key pair, masked table, seed reveal, label union) --
  formats, checked reading, atomic writing;
- ``steps``: the five steps of a round, which ``gptfl labels`` runs.

The config's ``labels.source: iblt`` reads the union with ``files.load_label_union``.
Nothing is imported here.
"""
