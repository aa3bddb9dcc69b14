"""What the book's chapters call, one module per chapter, named after it, so that a visible
cell stays a few lines:

* :mod:`~perceptcoh.book.intro` (the first page, ``book/intro``),
  :mod:`~perceptcoh.book.quickstart` (``book/quickstart``);
* the theory chapters (``book/theory``): :mod:`~perceptcoh.book.why_relax_geometry` (01),
  :mod:`~perceptcoh.book.rankings` (02), :mod:`~perceptcoh.book.perception` (03),
  :mod:`~perceptcoh.book.loss` (04), :mod:`~perceptcoh.book.synthetic` (05);
* the experiment chapters (``book/experiments``): :mod:`~perceptcoh.book.digits` (01),
  :mod:`~perceptcoh.book.laptop` (02), :mod:`~perceptcoh.book.cifar100` (03),
  :mod:`~perceptcoh.book.ablations` (04);

and what several chapters share: :mod:`~perceptcoh.book.claims` (a chapter's claims as rows,
checked and shown), :mod:`~perceptcoh.book.saved` (saved results, or the command that
writes them) and :mod:`~perceptcoh.book.report` (results documents as tables and verdicts).

This package may import the training engine (:mod:`perceptcoh.engine`) and the core; neither
imports it (``tests/test_layout.py``).
"""
