// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Errors of the tokenweave staking contract
/// @notice Every revert of NodeStaking uses one of these (or an OpenZeppelin error), so callers
///         can tell them apart.
interface IStakingErrors {
    /// @notice An amount argument was zero.
    error Staking__ZeroAmount();

    /// @notice An address argument was zero.
    error Staking__ZeroAddress();

    /// @notice More was asked to unbond than the operator has staked.
    /// @param requested The amount asked for.
    /// @param staked The operator's active stake.
    error Staking__InsufficientStake(uint256 requested, uint256 staked);

    /// @notice The operator has nothing unbonding to withdraw.
    /// @param operator The operator.
    error Staking__NothingUnbonding(address operator);

    /// @notice The unbonding delay has not passed yet.
    /// @param releaseAt When the unbonding stake may be withdrawn.
    /// @param now_ The current block's timestamp.
    error Staking__StillUnbonding(uint256 releaseAt, uint256 now_);

    /// @notice A slash came without evidence (a zero evidence hash).
    error Staking__NoEvidence();

    /// @notice The operator has neither active nor unbonding stake to slash.
    /// @param operator The operator.
    error Staking__NothingToSlash(address operator);
}
