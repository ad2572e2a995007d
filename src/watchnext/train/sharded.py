"""``train.embeddings = "sharded"``: the id tables sharded over the torchrun processes by TorchRec.

Today's DDP replicates every id table on every process, so the tables must fit one machine.
Here they are one ``EmbeddingBagCollection`` (model/keyed.py) that TorchRec's planner cuts over
the processes (``DistributedModelParallel``: table-wise on CPU, where FBGEMM has no row-wise
kernels; table- or row-wise on CUDA), each process holding only its tables; the rest of the
ranker is data-parallel (DDP inside DMP), as in the local mode.

The tables train with FBGEMM's fused kernels: the optimiser, exact row-wise Adagrad (the one
that runs on CPU; Adam asserts "not supported in CPU mode") at ``train.sharded_learning_rate``,
is applied *inside the backward pass*, once per backward. So a step makes one lookup for all
the parts this process trains (``ShardedNet``), and one backward: K shards on one process
and on K processes then give the same update. Gradients reaching the tables are the sum over
processes of each process's loss gradient (TorchRec does not average), while DDP averages the
dense gradients; the step scales its loss by the world size for DDP (step.py), so the lookup's
output scales its gradient back by 1/world.

Checkpoints hold the plain ranker's weights: ``gather`` brings each table, shard by shard, to
rank 0 (point-to-point, one table at a time) with its Adagrad state, and rank 0 writes the same
``model.safetensors`` the local mode writes. A checkpoint is therefore also the serving
checkpoint; resuming, each process copies its own shards back out of it. The cost: rank 0 holds
the full tables while it writes (CPU memory, not the accelerator's); per-rank checkpoint files
would remove that and are not built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DefaultDataParallelWrapper
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.types import ShardingEnv, ShardingType

from watchnext.config import RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.keyed import KeyedIdTables, fill_initial, table_name
from watchnext.model.ranker import MultitaskRanker, RankerOutput
from watchnext.train.distributed import Distributed
from watchnext.train.step import MOMENTUM

ADAGRAD_EPS = 1e-8


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: ANN001
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return grad * ctx.scale, None


class ShardedNet(nn.Module):
    """The tables and the table-less ranker as one module, so DMP shards the one and wraps the
    other in DDP; ``forward`` runs a whole step's parts with one lookup."""

    def __init__(self, tables: KeyedIdTables, ranker: MultitaskRanker, world: int):
        super().__init__()
        self.tables, self.ranker, self.world = tables, ranker, world

    def forward(self, parts: Sequence[Batch], seeds: Sequence[int],
                before_part: Callable[[], None], after_part: Callable[[], None]
                ) -> list[RankerOutput]:
        """One output per part; part i's random draws come from ``seeds[i]``."""
        embedded = self.tables(torch.cat([p.categorical for p in parts]),
                               torch.cat([p.multi for p in parts]))
        embedded = _ScaleGradient.apply(embedded, 1.0 / self.world)
        outputs = []
        for part, rows, seed in zip(parts, embedded.split([len(p) for p in parts]), seeds,
                                    strict=True):
            torch.manual_seed(seed)
            before_part()
            outputs.append(self.ranker(part, embedded=rows))
            after_part()
        return outputs


class ShardedTables:
    """The DMP-wrapped ``ShardedNet`` of a run, and its tables' state in and out."""

    def __init__(self, config: RunConfig, encoder: FeatureEncoder, ranker: MultitaskRanker,
                 group: Distributed):
        self.config, self.encoder, self.group = config, encoder, group
        tables = KeyedIdTables(encoder)  # on the meta device: DMP allocates each process's share
        self.features = tables.features
        sharder = EmbeddingBagCollectionSharder(fused_params={
            "optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
            "learning_rate": config.train.sharded_learning_rate, "eps": ADAGRAD_EPS})
        cuda = group.device.type == "cuda"
        kinds = [ShardingType.TABLE_WISE.value] + ([ShardingType.ROW_WISE.value] if cuda else [])
        constraints = {table_name(f): ParameterConstraints(
            sharding_types=kinds, compute_kernels=[EmbeddingComputeKernel.FUSED.value])
            for f in self.features}
        world = dist.get_world_size()
        topology = Topology(world_size=world, compute_device=group.device.type,
                            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        net = ShardedNet(tables, ranker, group.world)
        plan = EmbeddingShardingPlanner(topology=topology, constraints=constraints
                                        ).collective_plan(net, [sharder], dist.group.WORLD)
        self.dmp = DistributedModelParallel(
            net, env=ShardingEnv.from_process_group(dist.group.WORLD), plan=plan,
            sharders=[sharder], device=group.device,
            data_parallel_wrapper=DefaultDataParallelWrapper(static_graph=False))
        self._initialise(config.train.seed)

    def _weights(self) -> dict[str, torch.Tensor]:
        """Each table's ShardedTensor (views of the fused kernels' weights), by feature."""
        state = self.dmp.module.tables.ebc.state_dict()
        return {f: state[f"embedding_bags.{table_name(f)}.weight"] for f in self.features}

    def _momenta(self) -> dict[str, torch.Tensor]:
        """Each local table's row-wise Adagrad state (ShardedTensor views), by feature."""
        out = {}
        for param_state in self.dmp.fused_optimizer.state_dict()["state"].values():
            for key, value in param_state.items():
                name = key.rsplit(".", 1)[0]
                out[name.removeprefix("t_")] = value
        return out

    def _initialise(self, seed: int) -> None:
        for index, weight in enumerate(self._weights().values()):
            for shard in weight.local_shards():
                row, column = shard.metadata.shard_offsets
                dim = weight.metadata().size[1]
                if shard.tensor.device.type == "cpu":
                    fill_initial(shard.tensor, seed, index, dim, row, column)
                else:  # drawn on the CPU: the values do not depend on the device
                    values = torch.empty(shard.tensor.shape)
                    fill_initial(values, seed, index, dim, row, column)
                    shard.tensor.copy_(values)

    def gather(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """A collective: ``({InputLayer weight name: full table}, {table name: Adagrad state})``
        on rank 0, empty dicts elsewhere."""
        weights, momenta = self._weights(), self._momenta()
        main = self.group.is_main
        tables, states = {}, {}
        for feature in self.features:
            weight = weights[feature]
            size = weight.metadata().size
            full = torch.empty(size) if main else None
            full_state = torch.empty(size[0]) if main else None
            local = {s.metadata.shard_offsets[0]: s.tensor for s in weight.local_shards()}
            local_state = {s.metadata.shard_offsets[0]: s.tensor.reshape(-1)
                           for s in momenta[feature].local_shards()} if feature in momenta else {}
            for meta in weight.metadata().shards_metadata:
                owner, r0 = meta.placement.rank(), meta.shard_offsets[0]
                rows = slice(r0, r0 + meta.shard_sizes[0])
                if meta.shard_sizes[1] != size[1]:
                    raise RuntimeError(f"table {feature}: column-wise shards are not supported")
                if owner == self.group.rank == 0:
                    full[rows].copy_(local[r0])
                    full_state[rows].copy_(local_state[r0])
                elif owner == self.group.rank:
                    dist.send(local[r0].contiguous(), dst=0)
                    dist.send(local_state[r0].contiguous(), dst=0)
                elif main:
                    full[rows].copy_(self._receive(full[rows].shape, owner))
                    full_state[rows].copy_(self._receive(full_state[rows].shape, owner))
            if main:
                tables[self.weight_name(feature)] = full
                states[f"{MOMENTUM}.{feature}"] = full_state
        return tables, states

    def _receive(self, shape: torch.Size, owner: int) -> torch.Tensor:
        buffer = torch.empty(shape, device=self.group.device)
        dist.recv(buffer, src=owner)
        return buffer.cpu()

    def restore(self, weights: dict[str, torch.Tensor], states: dict[str, torch.Tensor]) -> None:
        """Copy this process's shards out of full tables (``gather``'s output, every rank)."""
        momenta = self._momenta()
        for feature, weight in self._weights().items():
            full, full_state = weights[self.weight_name(feature)], states[f"{MOMENTUM}.{feature}"]
            for shard in weight.local_shards():
                (r0, _), (rows, _) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                shard.tensor.copy_(full[r0:r0 + rows])
            for shard in momenta[feature].local_shards() if feature in momenta else []:
                r0, rows = shard.metadata.shard_offsets[0], shard.metadata.shard_sizes[0]
                shard.tensor.copy_(full_state[r0:r0 + rows].view_as(shard.tensor))

    def weight_name(self, feature: str) -> str:
        """The name of ``feature``'s table in the plain ranker (InputLayer) state dict."""
        position = self.features.index(feature)
        categorical = len(self.encoder.categorical)
        if position < categorical:
            return f"inputs.embeddings.{position}.weight"
        return f"inputs.bags.{position - categorical}.weight"

    def is_table(self, name: str) -> bool:
        return name.startswith(("inputs.embeddings.", "inputs.bags."))

    def describe(self) -> str:
        """Which process holds which table, for the log."""
        places = []
        for feature, weight in self._weights().items():
            ranks = sorted({m.placement.rank() for m in weight.metadata().shards_metadata})
            places.append(f"{feature} -> rank {','.join(map(str, ranks))}")
        return "; ".join(places)
