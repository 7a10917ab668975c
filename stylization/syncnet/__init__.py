"""SyncNet v2 (joonson/syncnet_python's layout): the lip-sync network behind LSE-D and LSE-C.

* :mod:`stylization.syncnet.model` — :class:`~stylization.syncnet.model.SyncNet`, the pure module
  (official ``syncnet_v2.model`` loads into it strictly: ``stylization.loading.load_official("syncnet", path)``);
* :mod:`stylization.syncnet.evaluate` — one clip's LSE-D, LSE-C and AV offset from RGB frames and 16 kHz audio
  (the official crop, MFCC and windowing; the scores themselves are :mod:`stylization.metrics.sync`).
"""
