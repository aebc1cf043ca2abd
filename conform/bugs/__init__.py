"""The parts of :mod:`conform.bugreport`: cases written as torch-only Python
(:mod:`~conform.bugs.case_code`, :mod:`~conform.bugs.inline`), how each upstream transform
is called (:mod:`~conform.bugs.transforms`) and the script around them
(:mod:`~conform.bugs.script`)."""
