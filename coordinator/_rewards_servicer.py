"""RewardsService: epochs, operators' earnings and claims (a thin adapter).

SendTransaction relays operators' signed claims and staking calls on threads of their own
(`RELAY_THREADS`, so that relays never take the threads other calls need), at most
`MAX_RELAYED` calls running or queued (RESOURCE_EXHAUSTED beyond); each is checked and simulated
before it is sent, and few may wait to be mined (`ContractRewardChain.send_raw`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tokenweave.coordinator._convert import epoch_to_proto
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._metering import format_micro, format_wei, micro_to_wei
from tokenweave.coordinator._nodes import normalize_address
from tokenweave.coordinator._servicers import Context
from tokenweave.coordinator._settlement import EpochSettler, RewardChain
from tokenweave.errors import InvalidArgumentError, ResourceExhaustedError
from tokenweave.types import EpochState
from tokenweave.v1 import rewards_pb2, rewards_pb2_grpc

#: Threads that relay transactions: more than the chain lets wait to be mined (4), so that
#: a refusal never waits behind transactions being mined.
RELAY_THREADS = 8
#: SendTransaction calls running or waiting for a relay thread, at most.
MAX_RELAYED = 16


class RewardsServicer(rewards_pb2_grpc.RewardsServiceServicer):
    def __init__(
        self,
        ledger: RewardLedger,
        settler: EpochSettler,
        chain: RewardChain,
        faucet_wei: int,
    ) -> None:
        self._ledger = ledger
        self._settler = settler
        self._chain = chain
        self._faucet_wei = faucet_wei
        self._relaying = 0
        self._relay_threads = ThreadPoolExecutor(RELAY_THREADS, thread_name_prefix="relay")

    @property
    def relaying(self) -> int:
        """SendTransaction calls running or waiting for a relay thread."""
        return self._relaying

    def _chain_proto(self) -> rewards_pb2.Chain:
        info = self._chain.info
        return rewards_pb2.Chain(
            chain_id=info.chain_id,
            endpoint=info.endpoint,
            token=info.token,
            distributor=info.distributor,
        )

    async def CloseEpoch(
        self, request: rewards_pb2.CloseEpochRequest, context: Context
    ) -> rewards_pb2.CloseEpochResponse:
        view = await self._settler.close_epoch()
        if view is None:
            return rewards_pb2.CloseEpochResponse()
        return rewards_pb2.CloseEpochResponse(epoch=epoch_to_proto(view))

    async def ListEpochs(
        self, request: rewards_pb2.ListEpochsRequest, context: Context
    ) -> rewards_pb2.ListEpochsResponse:
        epochs = await self._ledger.epochs()
        return rewards_pb2.ListEpochsResponse(
            epochs=[epoch_to_proto(e) for e in epochs], chain=self._chain_proto()
        )

    async def GetRewards(
        self, request: rewards_pb2.GetRewardsRequest, context: Context
    ) -> rewards_pb2.GetRewardsResponse:
        address = normalize_address(request.address)
        rewards = await self._ledger.rewards(address)
        claimed, balance = await asyncio.gather(
            asyncio.to_thread(self._chain.claimed, address),
            asyncio.to_thread(self._chain.balance, address),
        )
        on_chain = [e for e in rewards.epochs if e.state != EpochState.CLOSED]
        claimable = max(micro_to_wei(on_chain[-1].cumulative_micro) - claimed, 0) if on_chain else 0
        return rewards_pb2.GetRewardsResponse(
            address=address,
            tokens=rewards.tokens,
            earned=format_micro(rewards.earned_micro),
            unsettled=format_micro(rewards.unsettled_micro),
            claimed=format_wei(claimed),
            claimable=format_wei(claimable),
            balance=format_wei(balance),
            epochs=[
                rewards_pb2.EpochEarning(
                    epoch=e.epoch,
                    state=rewards_pb2.EpochState.Value(f"EPOCH_STATE_{e.state}"),
                    tokens=e.tokens,
                    earned=format_micro(e.earned_micro),
                    cumulative=format_micro(e.cumulative_micro),
                )
                for e in rewards.epochs
            ],
        )

    async def GetClaim(
        self, request: rewards_pb2.GetClaimRequest, context: Context
    ) -> rewards_pb2.GetClaimResponse:
        address = normalize_address(request.address)
        ticket = await self._ledger.claim_ticket(address)
        if self._faucet_wei:
            await asyncio.to_thread(self._chain.fund, address, self._faucet_wei)
        nonce, gas_price, claimed = await asyncio.gather(
            asyncio.to_thread(self._chain.nonce, address),
            asyncio.to_thread(self._chain.gas_price),
            asyncio.to_thread(self._chain.claimed, address),
        )
        return rewards_pb2.GetClaimResponse(
            chain=self._chain_proto(),
            epoch=ticket.epoch,
            cumulative_wei=str(ticket.cumulative_wei),
            proof=list(ticket.proof),
            nonce=nonce,
            gas_price_wei=str(gas_price),
            claimed_wei=str(claimed),
        )

    async def SendTransaction(
        self, request: rewards_pb2.SendTransactionRequest, context: Context
    ) -> rewards_pb2.SendTransactionResponse:
        if not request.raw_transaction:
            raise InvalidArgumentError("raw_transaction is empty")
        if self._relaying >= MAX_RELAYED:
            raise ResourceExhaustedError(
                f"{MAX_RELAYED} transactions are being relayed; try again shortly"
            )
        self._relaying += 1
        try:
            sent = await asyncio.get_running_loop().run_in_executor(
                self._relay_threads, self._chain.send_raw, request.raw_transaction
            )
        finally:
            self._relaying -= 1
        return rewards_pb2.SendTransactionResponse(
            tx_hash=sent.tx_hash,
            success=sent.success,
            block_number=sent.block_number,
            gas_used=sent.gas_used,
            revert_reason=sent.revert_reason,
        )
