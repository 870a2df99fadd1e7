"""Image galleries: an evaluation's worst images (``tools/eval.py --report``) and a data
set's annotations (``tools/browse.py``), drawn the same way on one static HTML page."""

from detseg.evaluation.gallery.dataset import browse_order, write_dataset_gallery
from detseg.evaluation.gallery.evaluation import WORST, write_evaluation_gallery
from detseg.evaluation.gallery.page import PAGE, Card, Page, write_gallery_page

__all__ = ["PAGE", "WORST", "Card", "Page", "browse_order", "write_dataset_gallery", "write_evaluation_gallery",
           "write_gallery_page"]
