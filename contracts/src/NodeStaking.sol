// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IStakingErrors} from "./IStakingErrors.sol";

/// @title tokenweave node staking
/// @notice Operators stake reward tokens to receive work in proportion to their stake. Stake
///         leaves in two steps: `requestUnstake` moves it to unbonding, and `withdraw` pays it
///         out once the unbonding delay has passed. Both active and unbonding stake can be
///         slashed by SLASHER_ROLE (the coordinator's poster key) when an operator is caught
///         cheating; the event records the hash of the evidence, and the tokens go to the
///         treasury, or are burned when there is none.
/// @dev One unbonding entry per operator: a new request adds to it and restarts its delay, so
///      stake can never leave sooner than `unbondingDelay` after it was last asked for.
contract NodeStaking is AccessControl, ReentrancyGuard, IStakingErrors {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to slash.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @notice Stake on its way out.
    /// @param amount Tokens waiting for the delay.
    /// @param releaseAt The timestamp from which `withdraw` pays them.
    struct Unbonding {
        uint256 amount;
        uint64 releaseAt;
    }

    /// @dev The staked token (RewardToken).
    IERC20 private immutable _token;
    /// @dev Where slashed tokens go; zero: they are burned.
    address private immutable _treasury;
    /// @dev Seconds between `requestUnstake` and the first possible `withdraw`.
    uint64 private immutable _unbondingDelay;
    /// @dev Each operator's active stake.
    mapping(address operator => uint256 amount) private _stakes;
    /// @dev Each operator's unbonding stake.
    mapping(address operator => Unbonding entry) private _unbonding;
    /// @dev The sum of every active stake.
    uint256 private _totalStaked;

    /// @notice An operator staked.
    /// @param operator The operator.
    /// @param amount What this call added.
    /// @param stake The operator's active stake after it.
    event Staked(address indexed operator, uint256 amount, uint256 stake);

    /// @notice An operator asked for stake back; it unbonds until `releaseAt`.
    /// @param operator The operator.
    /// @param amount What this call moved to unbonding.
    /// @param releaseAt When the operator's whole unbonding stake may be withdrawn.
    event UnstakeRequested(address indexed operator, uint256 amount, uint64 releaseAt);

    /// @notice An operator withdrew its unbonded stake.
    /// @param operator The operator.
    /// @param amount What was paid back.
    event Withdrawn(address indexed operator, uint256 amount);

    /// @notice An operator was slashed.
    /// @param operator The operator.
    /// @param evidence The hash of the evidence record (kept off chain).
    /// @param amount What was taken in all.
    /// @param fromUnbonding The part of `amount` taken from unbonding stake.
    event Slashed(
        address indexed operator, bytes32 indexed evidence, uint256 amount, uint256 fromUnbonding
    );

    /// @param token_ The staked token.
    /// @param admin Receives DEFAULT_ADMIN_ROLE, which grants and revokes SLASHER_ROLE.
    /// @param slasher Receives SLASHER_ROLE.
    /// @param treasury_ Receives slashed tokens; zero burns them (the token must be burnable).
    /// @param unbondingDelay_ Seconds stake stays slashable after `requestUnstake`.
    constructor(
        IERC20 token_,
        address admin,
        address slasher,
        address treasury_,
        uint64 unbondingDelay_
    ) {
        if (address(token_) == address(0) || admin == address(0) || slasher == address(0)) {
            revert Staking__ZeroAddress();
        }
        _token = token_;
        _treasury = treasury_;
        _unbondingDelay = unbondingDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(SLASHER_ROLE, slasher);
    }

    /// @notice Stake `amount` more tokens; the caller must have approved this contract for them.
    /// @param amount In the token's smallest unit.
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert Staking__ZeroAmount();
        uint256 updated = _stakes[msg.sender] + amount;
        _setStake(msg.sender, updated);
        emit Staked(msg.sender, amount, updated);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Move `amount` of the caller's stake to unbonding; it can be withdrawn after the
    ///         unbonding delay and stays slashable until then. The delay restarts for everything
    ///         already unbonding.
    /// @param amount In the token's smallest unit.
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert Staking__ZeroAmount();
        uint256 staked = _stakes[msg.sender];
        if (amount > staked) revert Staking__InsufficientStake(amount, staked);
        _setStake(msg.sender, staked - amount);
        Unbonding storage entry = _unbonding[msg.sender];
        entry.amount += amount;
        entry.releaseAt = uint64(block.timestamp) + _unbondingDelay;
        emit UnstakeRequested(msg.sender, amount, entry.releaseAt);
    }

    /// @notice Pay the caller its unbonding stake once the delay has passed.
    function withdraw() external nonReentrant {
        Unbonding memory entry = _unbonding[msg.sender];
        if (entry.amount == 0) revert Staking__NothingUnbonding(msg.sender);
        if (block.timestamp < entry.releaseAt) {
            revert Staking__StillUnbonding(entry.releaseAt, block.timestamp);
        }
        delete _unbonding[msg.sender];
        emit Withdrawn(msg.sender, entry.amount);
        _token.safeTransfer(msg.sender, entry.amount);
    }

    /// @notice Take up to `amount` from `operator`: its active stake first, then what is
    ///         unbonding. Takes what there is when the operator has less than `amount`.
    /// @param operator The operator caught cheating.
    /// @param amount The most to take.
    /// @param evidence The hash of the evidence record, recorded in the event.
    function slash(address operator, uint256 amount, bytes32 evidence)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
    {
        if (amount == 0) revert Staking__ZeroAmount();
        if (evidence == bytes32(0)) revert Staking__NoEvidence();
        uint256 staked = _stakes[operator];
        uint256 fromStake = amount < staked ? amount : staked;
        Unbonding storage entry = _unbonding[operator];
        uint256 rest = amount - fromStake;
        uint256 fromUnbonding = rest < entry.amount ? rest : entry.amount;
        uint256 taken = fromStake + fromUnbonding;
        if (taken == 0) revert Staking__NothingToSlash(operator);
        _setStake(operator, staked - fromStake);
        entry.amount -= fromUnbonding;
        emit Slashed(operator, evidence, taken, fromUnbonding);
        if (_treasury == address(0)) {
            ERC20Burnable(address(_token)).burn(taken);
        } else {
            _token.safeTransfer(_treasury, taken);
        }
    }

    /// @notice The operator's active stake (what work is shared in proportion to).
    /// @param operator The operator.
    function stakeOf(address operator) external view returns (uint256) {
        return _stakes[operator];
    }

    /// @notice The operator's unbonding stake and when it may be withdrawn.
    /// @param operator The operator.
    /// @return amount Tokens unbonding (0 when none).
    /// @return releaseAt The timestamp from which they may be withdrawn.
    function unbondingOf(address operator) external view returns (uint256 amount, uint64 releaseAt) {
        Unbonding memory entry = _unbonding[operator];
        return (entry.amount, entry.releaseAt);
    }

    /// @notice The sum of every operator's active stake (unbonding stake is not counted).
    function totalStaked() external view returns (uint256) {
        return _totalStaked;
    }

    /// @notice The staked token.
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @notice Where slashed tokens go (zero: burned).
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @notice Seconds between `requestUnstake` and the first possible `withdraw`.
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    /// @dev Every change of an active stake passes through here, keeping the total in step.
    /// @param operator The operator.
    /// @param amount Its new active stake.
    function _setStake(address operator, uint256 amount) private {
        _totalStaked = _totalStaked - _stakes[operator] + amount;
        _stakes[operator] = amount;
    }
}
