"""`pydock build`: Docker's classic builder beside the runtime (Docker 0.7's buildfile.go), made of the
runtime's own create/run/commit and the image store.

dockerfile.py reads the Dockerfile (graph/instructions.py parses each instruction, graph/shellwords.py
substitutes variables), context.py holds the build context and ignore.py its .dockerignore, steps.py
does each instruction (copying.py the files of COPY/ADD, cache.py the cache probe), builder.py runs the
stages. The front ends are cli/build.py and runtime/api/build.py.
"""
