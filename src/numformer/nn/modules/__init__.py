"""PyTorch's import paths for the modules: ``numformer.nn.modules.loss``,
``numformer.nn.modules.conv``, ... re-export the classes defined in ``numformer.nn`` (no second
definitions), so a program's ``from torch.nn.modules.loss import _Loss`` or
``isinstance(m, torch.nn.modules.conv._ConvNd)`` works after ``import numformer as torch``.
Each submodule holds the names PyTorch's does, where numformer has them (their private base
classes included, which programs subclass and test for).
"""

from numformer.nn.modules.activation import *  # noqa: F403
from numformer.nn.modules.batchnorm import *  # noqa: F403
from numformer.nn.modules.container import *  # noqa: F403
from numformer.nn.modules.conv import *  # noqa: F403
from numformer.nn.modules.distance import *  # noqa: F403
from numformer.nn.modules.dropout import *  # noqa: F403
from numformer.nn.modules.flatten import *  # noqa: F403
from numformer.nn.modules.linear import *  # noqa: F403
from numformer.nn.modules.loss import *  # noqa: F403
from numformer.nn.modules.module import *  # noqa: F403
from numformer.nn.modules.normalization import *  # noqa: F403
from numformer.nn.modules.pooling import *  # noqa: F403
from numformer.nn.modules.rnn import *  # noqa: F403
from numformer.nn.modules.sparse import *  # noqa: F403
from numformer.nn.modules.transformer import *  # noqa: F403
