"""Preprocessing: from raw pictures and videos to what the data layer stores.

This package owns everything that looks at a user's (or a dataset's) raw pixels to produce
landmarks and 3DMM coefficients:

* :mod:`~stylization.preprocess.faces` — face detection and 68 landmarks (dlib or face_alignment);
* :mod:`~stylization.preprocess.deep3d` and :mod:`~stylization.preprocess.recon_net` — the
  Deep3DFaceRecon backend (alignment + coefficient regressor);
* :mod:`~stylization.preprocess.fitting` — a fit of the face model to landmarks (no Deep3D files needed);
* :mod:`~stylization.preprocess.pose` — a pose source (video or coefficient ``.npy``) -> pose rows,
  and the pose track that drives a rendered video.

The MEAD / HDTF / folder drivers of the real-data corpus build here next. The pure crop geometry
(:mod:`stylization.data.alignment`) and the coefficient layout (:mod:`stylization.data.coeffs`)
stay in the data layer, below this package; models never import it (it sits in layer 4 beside
``stylization.loading``, which builds the Deep3D regressor from its official file).
"""
