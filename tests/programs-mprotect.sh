#!/bin/bash
# The real-program tests again, with guard pages made by mprotect (the
# fallback for kernels without MADV_GUARD_INSTALL).
LABYRINTH_GUARD=mprotect exec bash "$(dirname "$0")/programs.sh" "$@"
